/** The cloud module's tables, created only when the cloud link is enabled. */
import type { Migrations } from '../db/database.js';

export const cloudMigrations: Migrations = {
  owner: 'cloud',
  steps: [
    `CREATE TABLE IF NOT EXISTS cloud_object (kind TEXT NOT NULL, id TEXT NOT NULL, resource_version TEXT, body TEXT NOT NULL, PRIMARY KEY (kind, id)) WITHOUT ROWID;
     CREATE TABLE IF NOT EXISTS cloud_outbox (seq INTEGER PRIMARY KEY, resource TEXT NOT NULL, content TEXT NOT NULL);
     CREATE TABLE IF NOT EXISTS cloud_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;`,
    // What EdgeCore's metamanager keeps in its meta table: every other resource the cloud sends, by its resource key.
    `CREATE TABLE IF NOT EXISTS cloud_resource (key TEXT PRIMARY KEY, type TEXT NOT NULL, resource_version TEXT, value TEXT NOT NULL) WITHOUT ROWID;`,
    // The outbox stored compact (report-codec.ts): a row is either a blob without its resource (''),
    // whose names are in cloud_outbox_name, or a JSON report with its resource, as every row was up
    // to here; those stay as they are (no copy of a large queue), with their seqs and message ids.
    `CREATE TABLE IF NOT EXISTS cloud_outbox_name (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
     INSERT OR REPLACE INTO cloud_meta (key, value) SELECT 'next_seq', seq + 1 FROM cloud_outbox ORDER BY seq DESC LIMIT 1;`,
  ],
};
