// Regenerates the comparison report from a saved run of `npm run bench`:
// bench/results/report-<stamp>.md, bench/results/latest.md and the SVG
// charts in bench/results/charts/<stamp>/, next to the results file.
//
//   node --import tsx bench/report.ts bench/results/suite-<stamp>.json

import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { shownPath, writeReport } from "./lib/suite_output.ts";
import { isSuiteResults } from "./lib/suite_results.ts";

async function main(): Promise<void> {
  const file = process.argv[2];
  if (file === undefined || file.startsWith("-")) {
    console.error("usage: node --import tsx bench/report.ts bench/results/suite-<stamp>.json");
    process.exit(2);
  }
  const path = resolve(file);
  const parsed: unknown = JSON.parse(readFileSync(path, "utf8"));
  if (!isSuiteResults(parsed)) {
    console.error(`${file}: not the results of \`npm run bench\` (bench/results/suite-*.json)`);
    process.exit(2);
  }
  const written = await writeReport(parsed, path);
  for (const e of written.chartErrors) console.error(`chart not drawn: ${e}`);
  console.log(`report: ${shownPath(written.reportPath)}`);
  console.log(`latest: ${shownPath(written.latestPath)}`);
  console.log(`charts: ${written.chartPaths.length} SVG files`);
}

await main();
