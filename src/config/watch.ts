import { watch } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';

/** How long a burst of changes (an editor's write + rename) is let settle before `onChange` runs. */
const DEBOUNCE_MS = 200;

/**
 * Call `onChange` (debounced) when `path` is written or replaced: the config file, TLS material,
 * an htpasswd file. Watches the directory, not the file: editors and ConfigMap updates replace the
 * file (a rename, or the `..data` symlink swap), which a watch on the old inode would never report.
 */
export function watchFile(path: string, onChange: () => void, onError: (err: Error) => void): FSWatcher {
  const file = basename(path);
  let timer: NodeJS.Timeout | undefined;
  const watcher = watch(dirname(path), { persistent: false }, (_event, name) => {
    if (name !== null && name !== file && !name.startsWith('..')) return;
    clearTimeout(timer);
    timer = setTimeout(onChange, DEBOUNCE_MS);
  });
  watcher.on('error', onError);
  return watcher;
}
