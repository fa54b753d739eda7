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
  ],
};
