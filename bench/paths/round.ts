/** One migration of the paths bench, as guest.ts records it in the VM and index.ts reads it. */
export interface Round {
  kind: 'pooled' | 'single' | 'failover';
  status: number;
  totalTimeMs?: number;
  downtimeMs?: number;
  transferredBytes?: number;
  /** From the request to the answer: offer, stream, confirmation. */
  wallMs: number;
  /** MPTCP subflows of the stream seen while it ran. */
  subflows: number;
  error?: string;
}
