/**
 * The agent under a `Type=notify` unit: READY=1 once it serves, WATCHDOG=1 at half of
 * WATCHDOG_USEC, STOPPING=1 on SIGTERM, each sent through the real `systemd-notify` binary to
 * NOTIFY_SOCKET. The service manager's end is a python3 datagram socket standing in for systemd
 * (it also closes the barrier fds systemd-notify waits on). Needs `npm run build`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { spawnAgent, tempDir } from '../support/agent.js';
import { waitFor } from '../support/wait.js';

/** Prints each datagram on one line (newlines as `|`), closing the fds passed with it as systemd does. */
const RECEIVER = `
import array, os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print('listening', flush=True)
while True:
    data, ancillary, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(64))
    for _, kind, payload in ancillary:
        if kind == socket.SCM_RIGHTS:
            fds = array.array('i')
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
            for fd in fds:
                os.close(fd)
    print(data.decode().strip().replace('\\n', '|'), flush=True)
`;

const hasTools = existsSync('/usr/bin/systemd-notify') || existsSync('/bin/systemd-notify');

describe.runIf(hasTools)('sd_notify', () => {
  let receiver: ChildProcess | undefined;
  afterAll(() => receiver?.kill());

  it('says READY=1 when serving, pings the watchdog, and says STOPPING=1 on SIGTERM', async () => {
    const socket = join(tempDir(), 'notify');
    receiver = spawn('python3', ['-c', RECEIVER, socket], { stdio: ['ignore', 'pipe', 'inherit'] });
    const lines: string[] = [];
    const input = createInterface({ input: receiver.stdout! });
    input.on('line', (line) => lines.push(line));
    await waitFor('the receiver', () => lines.includes('listening'), { timeoutMs: 10_000 });

    const agent = await spawnAgent(['--data', tempDir()], { NOTIFY_SOCKET: socket, WATCHDOG_USEC: '1000000' });
    await waitFor('READY=1', () => lines.some((l) => l.startsWith('READY=1|STATUS=serving: mqtt ')), { timeoutMs: 10_000 });
    await waitFor('two WATCHDOG=1', () => lines.filter((l) => l === 'WATCHDOG=1').length >= 2, { timeoutMs: 10_000 });
    agent.child.kill('SIGTERM');
    expect(await agent.exited).toBe(0);
    await waitFor('STOPPING=1', () => lines.includes('STOPPING=1'), { timeoutMs: 10_000 });
  });
});
