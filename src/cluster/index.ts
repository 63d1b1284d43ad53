// Replication and failover over NATS JetStream: a node follows the
// leader's stream into its own LMDB and memory, takes the leases when they
// are free, and leads.
export { ClusterConfigError, type ClusterLink, openCluster } from "./connection.ts";
export { type PartitionPosition, positionKey } from "./follower.ts";
export type { LeaseValue } from "./lease.ts";
export { leaseMsDefault } from "./limits.ts";
export {
  type ClusterNames,
  clusterNames,
  gatewayLeaseKey,
  Header,
  namePattern,
  nodeReportKey,
  partitionLeaseKey,
} from "./names.ts";
export {
  ClusterNode,
  type DataHost,
  type DataMode,
  type NodeOptions,
  type NodeReport,
} from "./node.ts";
export { FencedError } from "./publisher.ts";
export type { PublishedSnapshots } from "./snapshots.ts";
