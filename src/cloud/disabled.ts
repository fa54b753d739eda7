/** What the local API says of the cloud link while it is disabled; the cloud module's own code is then never loaded. */
import type { Route } from '../http/router.js';

export const cloudDisabledRoutes: Route[] = [{ method: 'GET', path: '/api/v1/cloud', handle: () => ({ enabled: false }) }];
