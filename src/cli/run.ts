// Development entry point: `node src/cli/run.ts serve` (Node >= 23.6 runs the TypeScript directly).
import { runCli } from './main.ts';

await runCli(process.argv.slice(2));
