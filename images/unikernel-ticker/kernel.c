/*
 * A unikernel that keeps state in memory and reports it on the serial console (COM1), so a test
 * can tell a live migration carried it: a boot id read from the TSC once, a seconds counter
 * driven by the PIT, and a 1 MiB buffer mutated every second whose checksum is both kept
 * incrementally and recomputed from the buffer (`mem=ok` when they agree).
 */
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define COM1 0x3F8
#define HZ 100
#define PIT_HZ 1193182
#define BUFFER_WORDS (1u << 18) /* 1 MiB */
#define WRITES_PER_TICK 1024

static inline void outb(u16 port, u8 value) { __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port)); }
static inline u8 inb(u16 port) {
  u8 value;
  __asm__ volatile("inb %1, %0" : "=a"(value) : "Nd"(port));
  return value;
}

static void serial_init(void) {
  outb(COM1 + 1, 0x00); /* no UART interrupts: we poll */
  outb(COM1 + 3, 0x80); /* divisor latch */
  outb(COM1 + 0, 0x01); /* 115200 baud */
  outb(COM1 + 1, 0x00);
  outb(COM1 + 3, 0x03); /* 8N1 */
  outb(COM1 + 2, 0xC7); /* FIFO on, cleared */
  outb(COM1 + 4, 0x03); /* DTR, RTS */
}

static void put_char(char c) {
  if (c == '\n') put_char('\r');
  while (!(inb(COM1 + 5) & 0x20)) {
  }
  outb(COM1, (u8)c);
}

static void put_str(const char *s) {
  while (*s) put_char(*s++);
}

static void put_hex(u64 value, int digits) {
  for (int shift = (digits - 1) * 4; shift >= 0; shift -= 4) put_char("0123456789abcdef"[(value >> shift) & 0xF]);
}

static void put_dec(u32 value) {
  char digits[10];
  int n = 0;
  do {
    digits[n++] = (char)('0' + value % 10);
    value /= 10;
  } while (value);
  while (n) put_char(digits[--n]);
}

struct idt_entry {
  u16 offset_low;
  u16 selector;
  u8 zero;
  u8 type;
  u16 offset_high;
} __attribute__((packed));

static struct idt_entry idt[256];

static void idt_set(int vector, void (*handler)(void)) {
  u32 address = (u32)handler;
  idt[vector] = (struct idt_entry){(u16)address, 0x08, 0, 0x8E /* present, ring 0, 32-bit interrupt gate */, (u16)(address >> 16)};
}

extern char fault_stubs[];
extern void timer_entry(void);

static void idt_init(void) {
  for (int vector = 0; vector < 32; vector++) idt_set(vector, (void (*)(void))(fault_stubs + 8 * vector));
  idt_set(32, timer_entry);
  struct {
    u16 limit;
    u32 base;
  } __attribute__((packed)) descriptor = {sizeof idt - 1, (u32)idt};
  __asm__ volatile("lidt %0" : : "m"(descriptor));
}

/* The legacy PICs: IRQs 0-15 to vectors 32-47, everything masked except the PIT. */
static void pic_init(void) {
  outb(0x20, 0x11);
  outb(0xA0, 0x11);
  outb(0x21, 32);
  outb(0xA1, 40);
  outb(0x21, 0x04);
  outb(0xA1, 0x02);
  outb(0x21, 0x01);
  outb(0xA1, 0x01);
  outb(0x21, 0xFE);
  outb(0xA1, 0xFF);
}

static void pit_init(void) {
  u32 divisor = (PIT_HZ + HZ / 2) / HZ;
  outb(0x43, 0x34); /* channel 0, lo/hi byte, rate generator */
  outb(0x40, (u8)divisor);
  outb(0x40, (u8)(divisor >> 8));
}

static volatile u32 jiffies;

void timer_interrupt(void) {
  jiffies++;
  outb(0x20, 0x20);
}

__attribute__((noreturn)) void fault(u32 vector) {
  put_str("unikernel fault vector=");
  put_dec(vector);
  put_char('\n');
  for (;;) __asm__ volatile("cli; hlt");
}

static u32 buffer[BUFFER_WORDS];
static u32 rng;
/* Sum of buffer[i] * (2i + 1): a word lost or moved changes it. */
static u32 expected_sum;

static u32 checksum(void) {
  u32 sum = 0;
  for (u32 i = 0; i < BUFFER_WORDS; i++) sum += buffer[i] * (2 * i + 1);
  return sum;
}

static void mutate(void) {
  for (int k = 0; k < WRITES_PER_TICK; k++) {
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    u32 i = rng & (BUFFER_WORDS - 1);
    u32 old = buffer[i];
    buffer[i] = old + rng;
    expected_sum += (buffer[i] - old) * (2 * i + 1);
  }
}

static u64 rdtsc(void) {
  u32 low, high;
  __asm__ volatile("rdtsc" : "=a"(low), "=d"(high));
  return ((u64)high << 32) | low;
}

void kernel_main(void) {
  serial_init();
  u64 boot = rdtsc();
  rng = (u32)boot ^ (u32)(boot >> 32);
  if (!rng) rng = 1;
  idt_init();
  pic_init();
  pit_init();
  put_str("unikernel boot=");
  put_hex(boot, 16);
  put_str(" started\n");

  u32 tick = 0;
  for (;;) {
    __asm__ volatile("cli");
    if (jiffies / HZ == tick) {
      /* sti takes effect after hlt starts, so the interrupt that ends the sleep cannot slip in before it. */
      __asm__ volatile("sti; hlt" : : : "memory");
      continue;
    }
    __asm__ volatile("sti");
    tick++;
    mutate();
    u32 sum = checksum();
    put_str("unikernel boot=");
    put_hex(boot, 16);
    put_str(" tick=");
    put_dec(tick);
    put_str(" sum=");
    put_hex(sum, 8);
    put_str(sum == expected_sum ? " mem=ok\n" : " mem=BAD\n");
  }
}
