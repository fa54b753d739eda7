/** The mappers built into the agent, run in-process by the mapper host. */
import type { Mapper } from '../src/mapperhost/contract.js';
import { bleMapper } from './ble/index.js';
import { modbusMapper } from './modbus/index.js';
import { mqttMapper } from './mqtt/index.js';
import { virtualMapper } from './virtual/index.js';

export const builtinMappers: Mapper[] = [modbusMapper, virtualMapper, mqttMapper, bleMapper];
