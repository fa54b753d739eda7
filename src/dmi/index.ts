/** What the composition root loads when DMI is enabled. */
export { DmiModule } from './module.js';
export { MapperRegistry } from './registry.js';
