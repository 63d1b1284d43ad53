// Writes the comparison report next to its results file:
//   <dir>/report-<stamp>.md, <dir>/latest.md (the same text), and the charts
//   in <dir>/charts/<stamp>/*.svg, linked by relative path from both.
// <stamp> is the results file's own (suite-<stamp>.json), so regenerating
// the report of a saved run rewrites the same files.

import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { basename, dirname, isAbsolute, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { renderSvg, suiteCharts } from "./suite_charts.ts";
import { suiteMarkdown } from "./suite_report.ts";
import type { SuiteResults } from "./suite_results.ts";

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));

export interface WrittenReport {
  reportPath: string;
  latestPath: string;
  chartPaths: string[];
  /** Charts that could not be drawn, with the error. */
  chartErrors: string[];
}

function writeAtomically(path: string, text: string): void {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

export function stampOf(resultsPath: string): string {
  const name = basename(resultsPath).replace(/\.json$/, "");
  return name.startsWith("suite-") ? name.slice("suite-".length) : name;
}

/** The path as a reader in the repository types it. */
export function shownPath(path: string): string {
  const rel = relative(repoRoot, path);
  return rel.startsWith("..") || isAbsolute(rel) ? path : rel;
}

export async function writeReport(
  results: SuiteResults,
  resultsPath: string,
): Promise<WrittenReport> {
  const dir = dirname(resultsPath);
  const stamp = stampOf(resultsPath);
  const chartDir = `charts/${stamp}`;
  mkdirSync(join(dir, chartDir), { recursive: true });
  const chartPaths: string[] = [];
  const chartErrors: string[] = [];
  const chartFiles = new Set<string>();
  for (const chart of suiteCharts(results)) {
    try {
      const path = join(dir, chartDir, chart.file);
      writeAtomically(path, await renderSvg(chart.spec));
      chartPaths.push(path);
      chartFiles.add(chart.file);
    } catch (err) {
      chartErrors.push(`${chart.file}: ${(err as Error).message}`);
    }
  }
  const markdown = suiteMarkdown({
    results,
    resultsPath: shownPath(resultsPath),
    chartDir,
    chartFiles,
  });
  const reportPath = join(dir, `report-${stamp}.md`);
  const latestPath = join(dir, "latest.md");
  writeAtomically(reportPath, markdown);
  writeAtomically(latestPath, markdown);
  return { reportPath, latestPath, chartPaths, chartErrors };
}
