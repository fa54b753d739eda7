/**
 * @peculiar/x509 2.x loads tsyringe, which refuses to start without the reflect-metadata API
 * (`Reflect.getMetadata` …) and that polyfill is not installed. tsyringe only stores and reads
 * its own injection tokens, so own-metadata on a WeakMap is all it needs. Import this module
 * before @peculiar/x509.
 */
type MetadataReflect = typeof Reflect & {
  getMetadata?: (key: unknown, target: object) => unknown;
  getOwnMetadata?: (key: unknown, target: object) => unknown;
  defineMetadata?: (key: unknown, value: unknown, target: object) => void;
};

const reflect = Reflect as MetadataReflect;
if (!reflect.getMetadata) {
  const metadata = new WeakMap<object, Map<unknown, unknown>>();
  const read = (key: unknown, target: object) => metadata.get(target)?.get(key);
  reflect.getMetadata = read;
  reflect.getOwnMetadata = read;
  reflect.defineMetadata = (key, value, target) => {
    const own = metadata.get(target) ?? new Map<unknown, unknown>();
    metadata.set(target, own.set(key, value));
  };
}
