import type { KV } from "nats";
import { pino } from "pino";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type ClusterLink, openCluster } from "../../src/cluster/connection.ts";
import { Leases } from "../../src/cluster/lease.ts";
import { gatewayLeaseKey } from "../../src/cluster/names.ts";
import { type NatsCluster, startNats } from "./nats.ts";

// Leases against a real nats-server's key-value bucket. A renewal that NATS
// does not answer (a server or a stream leader lost for a moment) is not a
// renewal refused: the leader keeps its leases for as long as they hold and
// tries again, so a short NATS hiccup costs no failover. Only a renewal
// refused by compare-and-set (another node took over) ends its leadership.

const leaseMs = 1_000;
let nats: NatsCluster;
let link: ClusterLink;
let clusters = 0;

beforeAll(async () => {
  nats = await startNats();
}, 30_000);

/** Each test has a cluster of its own: every lease starts free. */
beforeEach(async () => {
  await link?.nc.close();
  link = await openCluster({
    servers: nats.url,
    cluster: `lease${++clusters}`,
    node: "a",
    replicas: 1,
  });
});

afterAll(async () => {
  await link?.nc.close();
  await nats?.stop();
});

/** How an update of a key fails: not at all, not sent ("TIMEOUT" before
 * NATS saw it), or stored with its answer lost ("TIMEOUT" after). */
type Fault = "none" | "lost" | "answer-lost";

/** The bucket, except that `update` of a key fails as `fault` says. */
function flaky(kv: KV, fault: (key: string) => Fault): KV {
  return new Proxy(kv, {
    get(target, prop, receiver) {
      if (prop === "update") {
        return async (key: string, ...rest: unknown[]) => {
          const f = fault(key);
          if (f === "lost") throw new Error("TIMEOUT");
          const revision = await (target.update as (...a: unknown[]) => Promise<number>)(
            key,
            ...rest,
          );
          if (f === "answer-lost") throw new Error("TIMEOUT");
          return revision;
        };
      }
      const v = Reflect.get(target, prop, receiver);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

function leases(node: string, fault: (key: string) => Fault = () => "none"): Leases {
  return new Leases({
    link: { ...link, kv: flaky(link.kv, fault) },
    partitionCount: 3,
    leaseMs,
    self: { node, http: "127.0.0.1:1", grpc: "127.0.0.1:2" },
    logger: pino({ level: "silent" }),
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("lease renewal", () => {
  it("a renewal NATS does not answer keeps the leases while they hold; the next one extends them", async () => {
    let down = false;
    const a = leases("a", () => (down ? "lost" : "none"));
    await a.observe();
    expect(await a.take()).toBe(true);
    expect(a.fenced()).toBe(null);
    down = true;
    expect(await a.renew()).toBe(true);
    expect(a.leading).toBe(true);
    expect(a.fenced()).toBe(null);
    // Past `leaseMs - margin` since the last renewal that succeeded, the
    // leader stops acknowledging, but keeps trying.
    await sleep(leaseMs);
    expect(await a.renew()).toBe(true);
    expect(a.fenced()).toMatch(/lease ran out/);
    // NATS answers again and nobody took over: the renewal succeeds, by
    // compare-and-set on the revisions last renewed.
    down = false;
    expect(await a.renew()).toBe(true);
    expect(a.fenced()).toBe(null);
    expect(a.renewals).toBe(1);
  });

  it("a renewal that fails for some keys only renews the others, and the next renews all", async () => {
    let failGateway = true;
    const a = leases("a", (key) => (failGateway && key === gatewayLeaseKey ? "lost" : "none"));
    await a.observe();
    expect(await a.take()).toBe(true);
    expect(await a.renew()).toBe(true);
    failGateway = false;
    // The keys renewed in the failed round carry new revisions: renewing
    // them with the old ones would be refused as if another node wrote.
    expect(await a.renew()).toBe(true);
    expect(a.fenced()).toBe(null);
    const b = leases("b");
    const { leader, free } = await b.observe();
    expect(free).toBe(false);
    expect(leader?.node).toBe("a");
  });

  it("a renewal stored whose answer was lost is known for the node's own: no step-down", async () => {
    let answers = false;
    const a = leases("a", () => (answers ? "none" : "answer-lost"));
    await a.observe();
    expect(await a.take()).toBe(true);
    // Stored, answer lost: the leases hold on the revisions before.
    expect(await a.renew()).toBe(true);
    answers = true;
    // The compare-and-set on those is refused, but the keys hold this
    // process's own later renewal: it renews from there.
    expect(await a.renew()).toBe(true);
    expect(a.leading).toBe(true);
    expect(a.fenced()).toBe(null);
    expect(await a.renew()).toBe(true);
    expect(a.renewals).toBe(2);
  });

  it("a renewal refused because another node took over ends the leadership", async () => {
    let down = false;
    const a = leases("a", () => (down ? "lost" : "none"));
    await a.observe();
    expect(await a.take()).toBe(true);
    down = true;
    // b sees the same revisions for a whole lease: free, and takes them.
    const b = leases("b");
    expect((await b.observe()).free).toBe(false);
    await sleep(leaseMs + 50);
    expect(await a.renew()).toBe(true);
    expect((await b.observe()).free).toBe(true);
    expect(await b.take()).toBe(true);
    expect(a.fenced()).toMatch(/lease ran out/);
    down = false;
    expect(await a.renew()).toBe(false);
    expect(a.leading).toBe(false);
    expect(a.fenced()).toMatch(/holds no lease/);
    expect(b.fenced()).toBe(null);
    expect((await b.observe()).leader?.node).toBe("b");
  });
});
