import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Tests start agents, brokers and child processes; two cores are shared between them.
    maxWorkers: 2,
  },
});
