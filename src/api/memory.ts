/**
 * `GET /api/v1/memory`: where the agent's resident memory goes, so a footprint figure can be
 * explained: the JS heap (used and reserved, code space apart), memory outside it (Buffers,
 * native objects), SQLite's page cache bound, and from the kernel's view, RSS split into mapped
 * files (the node binary, native modules: code) and anonymous memory (heaps, stacks, caches).
 */
import { readFileSync } from 'node:fs';
import { getHeapSpaceStatistics } from 'node:v8';
import type { Route } from '../http/router.js';

const MB = 1024 * 1024;
const mb = (bytes: number) => Math.round((bytes / MB) * 10) / 10;

/** A field of /proc/self/smaps_rollup, in MB; 0 where there is no /proc. */
function rollup(text: string, field: string): number {
  const kib = Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0);
  return mb(kib * 1024);
}

export interface MemoryReport {
  rss_mb: number;
  js_heap_used_mb: number;
  js_heap_reserved_mb: number;
  js_code_mb: number;
  external_mb: number;
  sqlite_cache_max_mb: number;
  mapped_files_mb: number;
  anonymous_mb: number;
}

export function memoryRoutes(sqliteCacheBytes: () => number): Route[] {
  return [
    {
      method: 'GET',
      path: '/api/v1/memory',
      handle: (): MemoryReport => {
        const usage = process.memoryUsage();
        const code = getHeapSpaceStatistics().find((space) => space.space_name === 'code_space');
        let smaps = '';
        try {
          smaps = readFileSync('/proc/self/smaps_rollup', 'utf8');
        } catch {
          // Not Linux: the kernel's split is unknown.
        }
        const rss = rollup(smaps, 'Rss');
        const anonymous = rollup(smaps, 'Anonymous');
        return {
          rss_mb: mb(usage.rss),
          js_heap_used_mb: mb(usage.heapUsed),
          js_heap_reserved_mb: mb(usage.heapTotal),
          js_code_mb: mb(code?.physical_space_size ?? 0),
          external_mb: mb(usage.external),
          sqlite_cache_max_mb: mb(sqliteCacheBytes()),
          mapped_files_mb: Math.round((rss - anonymous) * 10) / 10,
          anonymous_mb: anonymous,
        };
      },
    },
  ];
}
