/** The read-only admin page on its own listener (`admin.listen`). */
export { buildAdminServer } from './server.ts';
export type { AdminServerOptions } from './server.ts';
export { ADMIN_CSS, esc, renderAdminPage } from './page.ts';
export type { AdminView } from './page.ts';
