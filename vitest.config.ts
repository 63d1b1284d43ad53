import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    // Crash and simulation tests are CPU-heavy; two cores run two files at once.
    maxWorkers: 2,
  },
});
