import { describe, expect, it, vi } from 'vitest';
import type { Logger } from '../../src/log.js';
import { HandshakeLimiter, limitedAs, PeerRefusalLog } from '../../src/workloads/peer-limits.js';

describe('what an address is limited as', () => {
  it('an IPv4 address as itself, also written IPv4-mapped; an IPv6 address as its /64', () => {
    expect(limitedAs('192.0.2.7')).toBe('192.0.2.7');
    expect(limitedAs('::ffff:192.0.2.7')).toBe('192.0.2.7');
    expect(limitedAs('2001:db8:1:2:aaaa:bbbb:cccc:dddd')).toBe('2001:db8:1:2::/64');
    expect(limitedAs('2001:0db8:0001:0002::1')).toBe('2001:db8:1:2::/64');
    expect(limitedAs('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(limitedAs('::1')).toBe('0:0:0:0::/64');
    expect(limitedAs('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
  });
});

describe('handshake limits', () => {
  it('a host taking a fresh IPv6 address for each connection is held to its /64 bucket', () => {
    const limiter = new HandshakeLimiter({ burst: 3, perSecond: 1 });
    const admitted = Array.from({ length: 10 }, (_, i) => limiter.admit(`2001:db8:1:2::${(i + 1).toString(16)}`, 0));
    expect(admitted.filter(Boolean)).toHaveLength(3);
    expect(limiter.admit('2001:db8:1:3::1', 0)).toBe(true);
  });

  it('a flood from more networks than it remembers keeps its memory bounded', () => {
    const limiter = new HandshakeLimiter({ burst: 2, perSecond: 0.001 });
    for (let i = 0; i < 30_000; i++) limiter.admit(`2001:db8:${(i >> 16).toString(16)}:${(i & 0xffff).toString(16)}::1`, 0);
    expect((limiter as unknown as { buckets: Map<string, unknown> }).buckets.size).toBeLessThanOrEqual(10_000);
  });
});

describe('refusal log', () => {
  it('counts the refusals of one /64 in one line per interval', () => {
    const warn = vi.fn();
    const log = new PeerRefusalLog({ warn } as unknown as Logger, 1000);
    for (let i = 1; i <= 5; i++) log.refused(`2001:db8:1:2::${i}`, 'too many TLS handshakes', {}, i);
    expect(warn).toHaveBeenCalledOnce();
    log.refused('2001:db8:1:2::9', 'too many TLS handshakes', {}, 2000);
    expect(warn).toHaveBeenCalledTimes(2);
    expect(warn.mock.calls[1]![0]).toMatchObject({ remote: '2001:db8:1:2::9', refusals: 5 });
  });
});

describe('refusal log under a flood', () => {
  it('from more networks than it remembers within one interval keeps its memory bounded', () => {
    const log = new PeerRefusalLog({ warn: () => undefined } as unknown as Logger, 60_000);
    for (let i = 0; i < 30_000; i++) log.refused(`198.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, 'bad certificate', {}, 0);
    expect((log as unknown as { addresses: Map<string, unknown> }).addresses.size).toBeLessThanOrEqual(10_000);
  });
});
