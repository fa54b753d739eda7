/** The workload images the tests boot, built from images/ when a checkout has not built them yet. */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './agent.js';

export const IMAGES = join(ROOT, 'images/build');

/** Builds the images unless `image`'s manifest is there already. */
export function ensureImages(image = 'unikernel-ticker'): void {
  if (!existsSync(join(IMAGES, image, 'manifest.json'))) execFileSync(process.execPath, [join(ROOT, 'scripts/build-images.mjs')], { stdio: 'inherit' });
}
