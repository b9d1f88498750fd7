// The bits of Node's `process` these handlers read (no @types/node needed).
declare const process: { env: Record<string, string | undefined> };
