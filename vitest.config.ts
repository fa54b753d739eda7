import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // One file at a time: the VM testbeds and the workload tests each keep QEMU busy under TCG,
    // and two of them side by side on two cores pushed guests past their timeouts.
    fileParallelism: false,
  },
});
