/** The mappers built into the agent, run in-process by the mapper host. */
import type { Mapper } from '../src/mapperhost/contract.js';
import { virtualMapper } from './virtual/index.js';

export const builtinMappers: Mapper[] = [virtualMapper];
