// The cluster's bounds and timings, each with why that number.

/** Default lease time: a dead leader is replaced after about this long.
 * Shorter leases take over faster but renew more often (one KV write per
 * lease key every quarter lease) and step down on shorter NATS hiccups. */
export const leaseMsDefault = 3_000;

/** A follower's messages received and not yet applied: past it, receiving
 * waits for the writes in flight (the consumer's own pull window,
 * `followerPullCountMax`, bounds what NATS sends ahead). */
export const followerQueueCountMax = 16_384;
export const followerPullCountMax = 4_096;

/** Tries of one publish while JetStream does not answer (a stream leader
 * being elected takes 4-9 s in nats-server 2.9); the lease bounds it too:
 * a leader that cannot renew stops retrying. */
export const publishAttemptMax = 50;
export const publishRetryMs = 100;

/** How long the stream may deliver nothing while a node is behind it
 * before its consumer is remade: at least this, and two leases. */
export const streamStallMsMin = 3_000;

/** How long one pull of a follower's consumer waits. The client library
 * sends heartbeats every half of it and gives a consumer up after two
 * missed ones, then retries every pull's wait: with its 30 s default a
 * follower whose consumer's NATS server died stayed behind for a minute. */
export const followerPullExpiresMs = 4_000;

/** How long a node's first try to make its stream consumer may take; the
 * n-th try may take n times this, at most the stall time. NATS answers in
 * milliseconds, except when it placed the consumer on a server that died
 * and it has not noticed yet: then never, and the next try is placed anew. */
export const followerStartMs = 2_000;

/** Retries of a node that cannot follow (NATS down): doubling up to this. */
export const followRetryMsMax = 5_000;

/** How often a leader checks whether snapshots are due. */
export const snapshotCheckMs = 30_000;
