/**
 * One process at a time on a PGlite data directory. PGlite is PostgreSQL
 * inside this process, with no server to arbitrate: a second process (a
 * `sweep`, `migrate` or `audit verify` beside a running `serve`) would read
 * and write the same files unseen, and corrupt them.
 *
 * Invariant: at most one live process holds `<dir>/tasklease.lock`, and a
 * holder that died without releasing it (SIGKILL, a power cut) does not keep
 * the directory locked. The file, created whole by link(2) so no reader sees
 * it half written, names the holder (pid, host, start). On this host a holder
 * in this pid namespace is alive while its pid is (process.kill(pid, 0)) and,
 * where /proc says, that pid started when the holder did (a reused pid is not
 * the holder). A holder on another host or in another pid namespace (a
 * container on a shared volume, or this container before it restarted: its
 * pid 1 is not ours) is alive while it still touches the file every 10 s, so
 * a restarted container waits at most 30 s. A process exiting releases its
 * lock.
 * Proved by test/db/data-dir-lock.test.ts (two real processes; a SIGKILLed holder).
 */
import { randomBytes } from 'node:crypto';
import { linkSync, readFileSync, readlinkSync, renameSync, statSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';

const LOCK_FILE = 'tasklease.lock';
const HEARTBEAT_MS = 10_000;
/** A lock from another host untouched this long is its dead holder's. */
const REMOTE_STALE_MS = 30_000;

interface Holder {
  pid: number;
  host: string;
  /** When the holding process started (its performance.timeOrigin): tells a reused pid from the holder. */
  process_started: number;
  /** The kernel's start time of the holder's pid (/proc/<pid>/stat, field 22), where there is a /proc. */
  proc_start?: string;
  /** The holder's pid namespace (/proc/self/ns/pid): pids of another namespace (another container) mean nothing here. */
  pid_ns?: string;
  since: string;
}

export class DataDirLockedError extends Error {
  override name = 'DataDirLockedError';
}

export interface DataDirLock {
  release(): void;
}

const describe = (h: Holder) => `process ${h.pid} on host ${h.host} (since ${h.since})`;

function readHolder(path: string): { raw: string; holder: Holder | undefined } | undefined {
  let raw: string;
  try {
    raw = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const holder = JSON.parse(raw) as Holder;
    return { raw, holder: Number.isInteger(holder.pid) && holder.pid > 0 && typeof holder.host === 'string' ? holder : undefined };
  } catch {
    return { raw, holder: undefined };
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, owned by someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The kernel's start time of `pid` (clock ticks since boot), or undefined where /proc cannot say. */
function procStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may hold spaces: starttime is field 22.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** This process's pid namespace, where /proc says. */
function pidNamespace(): string | undefined {
  try {
    return readlinkSync('/proc/self/ns/pid');
  } catch {
    return undefined;
  }
}

const touchedWithin = (path: string, ms: number) => {
  const mtime = statSync(path, { throwIfNoEntry: false })?.mtimeMs;
  return mtime !== undefined && Date.now() - mtime < ms;
};

/** Whether the lock at `path`, holding `holder`, belongs to a live process; throws if that process is this one. */
function holderAlive(path: string, holder: Holder | undefined, dir: string): boolean {
  const ns = pidNamespace();
  if (!holder || holder.host !== hostname() || (holder.pid_ns !== undefined && ns !== undefined && holder.pid_ns !== ns)) {
    // Unreadable, written on another host, or by a process in another pid namespace (another container on
    // a shared volume, or this container before a restart): alive for as long as its holder keeps touching it.
    return touchedWithin(path, REMOTE_STALE_MS);
  }
  if (holder.pid === process.pid) {
    if (holder.process_started === performance.timeOrigin) throw new DataDirLockedError(`the PGlite data directory ${dir} is already open in this process`);
    return false; // an earlier process that had this pid
  }
  if (!pidAlive(holder.pid)) return false;
  const started = procStart(holder.pid);
  // The pid is alive: it is the holder only if it started when the holder did (else a restart reused it).
  // Where /proc cannot tell (macOS, Windows), a live pid is the holder: a suspended or debugged holder keeps its lock.
  if (started !== undefined && holder.proc_start !== undefined) return started === holder.proc_start;
  return true;
}

/**
 * Takes the data directory's lock, or throws a DataDirLockedError naming the
 * directory and the process that holds it.
 */
export function lockDataDir(directory: string): DataDirLock {
  const dir = resolve(directory);
  const path = join(dir, LOCK_FILE);
  const me: Holder = { pid: process.pid, host: hostname(), process_started: performance.timeOrigin, proc_start: procStart(process.pid), pid_ns: pidNamespace(), since: new Date().toISOString() };
  const mine = JSON.stringify(me);
  const temp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}`;
  writeFileSync(temp, mine, { mode: 0o600 });
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        linkSync(temp, path);
        return hold(path, mine);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const found = readHolder(path);
      if (!found) continue; // released meanwhile
      if (holderAlive(path, found.holder, dir)) throw locked(dir, found.holder);
      // Dead: move exactly that file aside. If another process replaced it meanwhile, what moved is
      // that process's live lock: put it back and yield to it.
      const aside = `${path}.stale.${randomBytes(6).toString('hex')}`;
      try {
        renameSync(path, aside);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      const moved = readHolder(aside);
      if (moved && moved.raw !== found.raw) {
        try {
          linkSync(aside, path);
        } catch {
          // someone else holds it now: they win
        }
        unlinkSync(aside);
        throw locked(dir, moved.holder);
      }
      unlinkSync(aside);
    }
    throw new DataDirLockedError(`the PGlite data directory ${dir} is being locked by other processes; try again`);
  } finally {
    unlinkSync(temp);
  }
}

function locked(dir: string, holder: Holder | undefined): DataDirLockedError {
  return new DataDirLockedError(
    `the PGlite data directory ${dir} is in use by ${holder ? describe(holder) : 'another process'}: ` +
      'PGlite serves one process at a time. Stop that process first, or set DATABASE_URL to a PostgreSQL database to run several.',
  );
}

function hold(path: string, mine: string): DataDirLock {
  // Tells holders on other hosts (a shared volume) that this one is alive; nothing for the event loop to wait on.
  const heartbeat = setInterval(() => {
    const now = new Date();
    try {
      utimesSync(path, now, now);
    } catch {
      // released or removed: nothing to keep alive
    }
  }, HEARTBEAT_MS);
  heartbeat.unref();
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    clearInterval(heartbeat);
    process.off('exit', release);
    // Only our own lock: never one that another process took over after deciding ours was stale.
    if (readHolder(path)?.raw === mine) unlinkSync(path);
  };
  // A process that exits without closing (process.exit on a fatal error) leaves the directory free.
  process.on('exit', release);
  return { release };
}
