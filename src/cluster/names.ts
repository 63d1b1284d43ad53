// Where a cluster's state lives in NATS. Everything is named after the
// cluster so that several stockd clusters can share one NATS system.

/** Cluster and node names: what NATS subjects, stream and bucket names take. */
export const namePattern = /^[A-Za-z0-9_-]{1,64}$/;

export interface ClusterNames {
  cluster: string;
  /** The JetStream stream holding every replicated write. */
  stream: string;
  /** Every subject of the stream. */
  subjects: string[];
  /** The filter that matches every subject of the stream. */
  all: string;
  /** The journal of one partition. */
  partition(p: number): string;
  /** The gateway's records (catalog, carts, orders, keys). */
  records: string;
  /** The coordinator's decisions (reservations spanning partitions). */
  coordinator: string;
  /** Key-value bucket of leases and node reports. */
  leases: string;
  /** Object store of snapshots. */
  snapshots: string;
  /** Core-NATS subject a running node answers on (name in use?). */
  node(name: string): string;
  /** Core-NATS subject the leader answers on: take and publish snapshots now. */
  snapshotRequest: string;
}

export function clusterNames(cluster: string): ClusterNames {
  const base = `stockd.${cluster}`;
  return {
    cluster,
    stream: `STOCKD_${cluster}`,
    subjects: [`${base}.p.*`, `${base}.records`, `${base}.coordinator`],
    all: `${base}.>`,
    partition: (p) => `${base}.p.${p}`,
    records: `${base}.records`,
    coordinator: `${base}.coordinator`,
    leases: `stockd_${cluster}_leases`,
    snapshots: `stockd_${cluster}_snapshots`,
    node: (name) => `stockd-node.${cluster}.${name}`,
    snapshotRequest: `stockd-ctl.${cluster}.snapshot`,
  };
}

/** The partition a journal subject names, or null for another subject. */
export function partitionOfSubject(names: ClusterNames, subject: string): number | null {
  const prefix = `stockd.${names.cluster}.p.`;
  if (!subject.startsWith(prefix)) return null;
  const p = Number(subject.slice(prefix.length));
  return Number.isInteger(p) && p >= 0 ? p : null;
}

/** Lease keys: one per partition and one for the gateway's records and the
 * coordinator, which go with whoever leads. */
export const gatewayLeaseKey = "lease.gateway";
export function partitionLeaseKey(p: number): string {
  return `lease.p.${p}`;
}
export function nodeReportKey(node: string): string {
  return `node.${node}`;
}
export const clusterMetaKey = "meta";

/** Message headers stockd sets. */
export const Header = {
  /** The writer's epoch. */
  Epoch: "Stockd-Epoch",
  /** A journal batch's first and last sequence numbers ("first-last"). */
  Seq: "Stockd-Seq",
  /** A new leader's mark: nothing but it, so older writers are fenced. */
  Fence: "Stockd-Fence",
  /** The node that wrote the message. */
  Node: "Stockd-Node",
} as const;
