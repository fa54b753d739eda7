/** Whether this kernel makes MPTCP sockets: built with MPTCP and `net.mptcp.enabled` set. */
import { readFileSync } from 'node:fs';

export function kernelHasMptcp(): boolean {
  try {
    return readFileSync('/proc/sys/net/mptcp/enabled', 'utf8').trim() === '1';
  } catch {
    return false;
  }
}
