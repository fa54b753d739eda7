/**
 * Unsigned and zigzag varints (7 bits a byte, low bits first) and length-prefixed UTF-8, for the
 * outbox's compact reports. Arithmetic rather than bit operators: timestamps in ms need 41 bits,
 * beyond JavaScript's 32-bit bitwise range; every value written is a safe integer.
 */

export class ByteWriter {
  private buffer: Buffer;
  private length = 0;

  constructor(initial = 256) {
    this.buffer = Buffer.allocUnsafe(initial);
  }

  /** Starts a new value, reusing the buffer: one writer serves every report. */
  reset(): this {
    this.length = 0;
    return this;
  }

  private room(bytes: number): void {
    if (this.length + bytes <= this.buffer.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.length + bytes));
    this.buffer.copy(grown, 0, 0, this.length);
    this.buffer = grown;
  }

  byte(value: number): void {
    this.room(1);
    this.buffer[this.length++] = value;
  }

  /** A non-negative safe integer. */
  uint(value: number): void {
    this.room(8);
    while (value >= 0x80) {
      this.buffer[this.length++] = (value % 0x80) + 0x80;
      value = Math.floor(value / 0x80);
    }
    this.buffer[this.length++] = value;
  }

  /** A safe integer of either sign, small in magnitude → few bytes. */
  int(value: number): void {
    this.uint(value >= 0 ? value * 2 : -value * 2 - 1);
  }

  string(value: string): void {
    const bytes = Buffer.byteLength(value);
    this.uint(bytes);
    this.room(bytes);
    this.length += this.buffer.write(value, this.length, 'utf8');
  }

  /** UTF-8 text as it is, no length before it. */
  text(value: string): void {
    this.room(value.length * 3);
    this.length += this.buffer.write(value, this.length, 'utf8');
  }

  /** A copy of what was written: the buffer itself is reused. */
  bytes(): Buffer {
    return Buffer.from(this.buffer.subarray(0, this.length));
  }

  /** What was written, read as UTF-8 text: one flat string, whatever the number of pieces. */
  toString(): string {
    return this.buffer.toString('utf8', 0, this.length);
  }
}

/** Thrown on bytes that end early or overflow: a damaged row, reported by the caller with its seq. */
export class ByteFormatError extends Error {}

export class ByteReader {
  private offset = 0;

  constructor(private readonly buffer: Uint8Array) {}

  get done(): boolean {
    return this.offset >= this.buffer.length;
  }

  byte(): number {
    const value = this.buffer[this.offset++];
    if (value === undefined) throw new ByteFormatError('ends early');
    return value;
  }

  uint(): number {
    let value = 0;
    let scale = 1;
    for (;;) {
      const b = this.byte();
      value += (b % 0x80) * scale;
      if (b < 0x80) break;
      scale *= 0x80;
      if (scale > Number.MAX_SAFE_INTEGER) throw new ByteFormatError('varint overflows');
    }
    return value;
  }

  int(): number {
    const z = this.uint();
    return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
  }

  string(): string {
    const length = this.uint();
    const end = this.offset + length;
    if (end > this.buffer.length) throw new ByteFormatError('ends early');
    const text = Buffer.from(this.buffer.buffer, this.buffer.byteOffset + this.offset, length).toString('utf8');
    this.offset = end;
    return text;
  }
}
