/** The mappers built into the agent, run in-process by the mapper host. */
import type { Mapper } from '../src/mapperhost/contract.js';
import { bleMapper } from './ble/mapper.js';
import { modbusMapper } from './modbus/mapper.js';
import { mqttMapper } from './mqtt/mapper.js';
import { virtualMapper } from './virtual/mapper.js';

export const builtinMappers: Mapper[] = [modbusMapper, virtualMapper, mqttMapper, bleMapper];
