/**
 * The Modbus test peers themselves, with no agent: the pymodbus server over TCP and over RTU
 * on a socat pty pair, read and written by mbpoll, and the register encoding helpers.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  float32ToWords,
  float64ToWords,
  int16ToWord,
  int32ToWords,
  mbpoll,
  mbpollRtuArgs,
  mbpollRun,
  mbpollTcpArgs,
  mbpollValues,
  startModbusRtu,
  startModbusTcp,
  stringToWords,
  uint32ToWords,
  wordsToFloat32,
  wordsToFloat64,
  wordsToInt32,
  wordToInt16,
  type ModbusRtuServer,
  type ModbusTcpServer,
} from '../support/modbus.js';

describe('register encodings', () => {
  it('float32 21.5 is 0x41AC 0x0000, word-swapped 0x0000 0x41AC, byte-swapped 0xAC41 0x0000', () => {
    expect(float32ToWords(21.5)).toEqual([0x41ac, 0x0000]);
    expect(float32ToWords(21.5, { wordSwap: true })).toEqual([0x0000, 0x41ac]);
    expect(float32ToWords(21.5, { byteSwap: true })).toEqual([0xac41, 0x0000]);
    expect(wordsToFloat32([0x0000, 0x41ac], { wordSwap: true })).toBe(21.5);
  });

  it('int32, uint32, int16, float64 and strings round-trip', () => {
    expect(int32ToWords(-2)).toEqual([0xffff, 0xfffe]);
    expect(int32ToWords(70000, { wordSwap: true })).toEqual([0x1170, 0x0001]);
    expect(wordsToInt32(int32ToWords(-123456, { wordSwap: true, byteSwap: true }), { wordSwap: true, byteSwap: true })).toBe(-123456);
    expect(uint32ToWords(0xdeadbeef)).toEqual([0xdead, 0xbeef]);
    expect(int16ToWord(-5)).toBe(0xfffb);
    expect(wordToInt16(0xfffb)).toBe(-5);
    expect(wordsToFloat64(float64ToWords(Math.PI, { wordSwap: true }), { wordSwap: true })).toBe(Math.PI);
    expect(stringToWords('ABC', 3)).toEqual([0x4142, 0x4300, 0x0000]);
  });
});

describe('pymodbus TCP server read and written by mbpoll', () => {
  let server: ModbusTcpServer;

  beforeAll(async () => {
    server = await startModbusTcp({
      slaves: {
        1: {
          hr: { 0: float32ToWords(21.5), 2: float32ToWords(21.5, { wordSwap: true }), 4: int16ToWord(-5) },
          ir: { 10: 1234 },
          co: { 3: 1 },
          di: { 2: true },
          illegal: { hr: [[100, 110]] },
        },
        2: { hr: { 0: 7 } },
        3: { silent: true },
      },
    });
  });

  afterAll(async () => {
    await server?.stop();
  });

  it('serves holding registers: float32 in both word orders and int16', async () => {
    // mbpoll's 32-bit types take the LOW word first unless -B is given.
    const big = mbpollValues(await mbpoll([...mbpollTcpArgs(server.port, { ref: 0, count: 1, type: '4:float' }).slice(0, -1), '-B', '127.0.0.1']));
    expect(big.get(0)).toBe('21.5');
    const little = mbpollValues(await mbpoll(mbpollTcpArgs(server.port, { ref: 2, count: 1, type: '4:float' })));
    expect(little.get(2)).toBe('21.5');
    const words = mbpollValues(await mbpoll(mbpollTcpArgs(server.port, { ref: 0, count: 5 })));
    expect([...words.values()]).toEqual(['16812', '0', '0', '16812', '65531']);
  });

  it('serves input registers, coils and discrete inputs at 0-based addresses', async () => {
    expect(mbpollValues(await mbpoll(mbpollTcpArgs(server.port, { ref: 10, type: '3' }))).get(10)).toBe('1234');
    expect([...mbpollValues(await mbpoll(mbpollTcpArgs(server.port, { ref: 0, count: 5, type: '0' }))).values()]).toEqual(['0', '0', '0', '1', '0']);
    expect([...mbpollValues(await mbpoll(mbpollTcpArgs(server.port, { ref: 0, count: 4, type: '1' }))).values()]).toEqual(['0', '0', '1', '0']);
    // Without -0, mbpoll references are 1-based: reference 11 is PDU address 10.
    const oneBased = await mbpoll(['-m', 'tcp', '-p', String(server.port), '-a', '1', '-r', '11', '-t', '3', '-1', '127.0.0.1']);
    expect(mbpollValues(oneBased).get(11)).toBe('1234');
  });

  it('keeps slaves apart, answers illegal ranges with exception 2, and a silent slave times out', async () => {
    expect(mbpollValues(await mbpoll(mbpollTcpArgs(server.port, { slave: 2, ref: 0 }))).get(0)).toBe('7');
    const illegal = await mbpollRun(mbpollTcpArgs(server.port, { ref: 105 }));
    expect(illegal.code).not.toBe(0);
    expect(illegal.stderr).toMatch(/Illegal data address/);
    const silent = await mbpollRun([...mbpollTcpArgs(server.port, { slave: 3, ref: 0 }).slice(0, -1), '-o', '0.3', '127.0.0.1']);
    expect(silent.code).not.toBe(0);
    expect(silent.stderr).toMatch(/timed out/);
  });

  it('takes writes from mbpoll and from set(), and get() sees them', async () => {
    await mbpoll(mbpollTcpArgs(server.port, { ref: 20 }).concat('--', '123', '456'));
    expect(await server.get(1, 'hr', 20, 2)).toEqual([123, 456]);
    await mbpoll(mbpollTcpArgs(server.port, { ref: 7, type: '0' }).concat('1'));
    expect(await server.get(1, 'co', 7)).toEqual([1]);
    await server.set(1, 'ir', 30, [42, 43]);
    expect([...mbpollValues(await mbpoll(mbpollTcpArgs(server.port, { ref: 30, count: 2, type: '3' }))).values()]).toEqual(['42', '43']);
    await expect(server.set(9, 'hr', 0, [1])).rejects.toThrow(/ERROR/);
  });

  it('restarts on the same port', async () => {
    const port = server.port;
    await server.stop();
    expect((await mbpollRun([...mbpollTcpArgs(port, { ref: 10, type: '3' }).slice(0, -1), '-o', '0.3', '127.0.0.1'])).code).not.toBe(0);
    server = await startModbusTcp({ port, slaves: { 1: { ir: { 10: 999 } } } });
    expect(server.port).toBe(port);
    expect(mbpollValues(await mbpoll(mbpollTcpArgs(port, { ref: 10, type: '3' }))).get(10)).toBe('999');
  });
});

describe('pymodbus RTU server on a socat pty pair, read and written by mbpoll', () => {
  let server: ModbusRtuServer;

  beforeAll(async () => {
    server = await startModbusRtu({ slaves: { 1: { hr: { 0: float32ToWords(21.5) }, co: { 3: 1 } }, 2: { ir: { 1: 77 } } } });
  });

  afterAll(async () => {
    await server?.stop();
  });

  it('gives two distinct pty paths', () => {
    expect(server.devicePath).toMatch(/^\/dev\/pts\/\d+$/);
    expect(server.serverPath).toMatch(/^\/dev\/pts\/\d+$/);
    expect(server.devicePath).not.toBe(server.serverPath);
  });

  it('reads registers, coils and a second slave over RTU', async () => {
    const float = mbpollValues(await mbpoll([...mbpollRtuArgs(server.devicePath, { ref: 0, type: '4:float' }).slice(0, -1), '-B', server.devicePath]));
    expect(float.get(0)).toBe('21.5');
    expect(mbpollValues(await mbpoll(mbpollRtuArgs(server.devicePath, { ref: 3, type: '0' }))).get(3)).toBe('1');
    expect(mbpollValues(await mbpoll(mbpollRtuArgs(server.devicePath, { slave: 2, ref: 1, type: '3' }))).get(1)).toBe('77');
  });

  it('takes a write over RTU', async () => {
    await mbpoll(mbpollRtuArgs(server.devicePath, { ref: 5 }).concat('4321'));
    expect(await server.get(1, 'hr', 5)).toEqual([4321]);
  });
});
