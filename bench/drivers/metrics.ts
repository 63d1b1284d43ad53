// stockd's own counters (GET /metrics, Prometheus text): the C clients
// cannot read a gRPC status (every answer is HTTP 200), so their successes
// are the change of stockd_requests_total{code="OK"} over the run.

/** Time a scrape may take. */
const scrapeMsMax = 10_000;

export interface Scrape {
  /** stockd_requests_total by "transport method code". */
  requests: Map<string, number>;
  openHolds: number;
}

export async function scrape(baseUrl: string): Promise<Scrape> {
  const res = await fetch(`${baseUrl}/metrics`, { signal: AbortSignal.timeout(scrapeMsMax) });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`GET /metrics: ${res.status}: ${text.slice(0, 300)}`);
  const requests = new Map<string, number>();
  let openHolds = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith("stockd_requests_total{")) {
      const labels = labelsOf(line);
      const value = Number(line.slice(line.lastIndexOf(" ") + 1));
      requests.set(`${labels.transport} ${labels.method} ${labels.code}`, value);
    } else if (line.startsWith("stockd_open_holds ")) {
      openHolds = Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return { requests, openHolds };
}

function labelsOf(line: string): Record<string, string> {
  const out: Record<string, string> = {};
  const body = line.slice(line.indexOf("{") + 1, line.lastIndexOf("}"));
  for (const m of body.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) out[m[1]!] = m[2]!;
  return out;
}

/** Refusals of a reservation: no stock, not an error. */
const refusalCodes = new Set(["OUT_OF_STOCK", "INSUFFICIENT_STOCK"]);

export interface RequestDelta {
  ok: number;
  refused: number;
  errors: number;
  /** code -> answers */
  byCode: Record<string, number>;
}

/** Answers of one method over one transport between two scrapes. */
export function requestDelta(
  before: Scrape,
  after: Scrape,
  transport: "grpc" | "http",
  method: string,
): RequestDelta {
  const d: RequestDelta = { ok: 0, refused: 0, errors: 0, byCode: {} };
  const prefix = `${transport} ${method} `;
  for (const [key, value] of after.requests) {
    if (!key.startsWith(prefix)) continue;
    const n = value - (before.requests.get(key) ?? 0);
    if (n === 0) continue;
    const code = key.slice(prefix.length);
    d.byCode[code] = n;
    if (code === "OK") d.ok += n;
    else if (refusalCodes.has(code)) d.refused += n;
    else d.errors += n;
  }
  return d;
}
