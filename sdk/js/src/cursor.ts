/**
 * Positions per topic — the last sequence number seen and the epoch it belongs to — and the
 * cursor text the server takes (`topic:seq@epoch,…`, the same in `resume=`, `cursor=` and an
 * event stream's `Last-Event-ID`).
 */
export interface Position {
  seq: number;
  epoch?: string;
}

/** What a delivery means for a topic's position. */
export type Verdict = "deliver" | "duplicate";

export class Positions {
  private readonly map = new Map<string, Position>();

  /** The position of `topic`, if any. */
  get(topic: string): Position | undefined {
    return this.map.get(topic);
  }

  /** Every position. */
  entries(): [string, Position][] {
    return [...this.map.entries()];
  }

  /** Forget `topic`. */
  delete(topic: string): void {
    this.map.delete(topic);
  }

  /** Message `seq` of `topic` arrived: deliver it (and move), or drop a duplicate. */
  onMessage(topic: string, seq: number): Verdict {
    const p = this.map.get(topic);
    if (p && seq <= p.seq) return "duplicate";
    this.map.set(topic, { seq, epoch: p?.epoch });
    return "deliver";
  }

  /**
   * The server answered a subscription: its newest number and epoch, and (when resuming)
   * whether everything missed follows. Returns true when the client must reset its state
   * of the topic (another epoch: old numbers mean nothing now).
   */
  onSubscribed(topic: string, seq: number, epoch: string, recovered?: boolean): boolean {
    const p = this.map.get(topic);
    if (!p || recovered === undefined) {
      // A fresh subscription: live messages follow `seq`.
      this.map.set(topic, { seq: p && p.epoch === epoch ? p.seq : seq, epoch });
      return false;
    }
    if (recovered === false && p.epoch !== undefined && p.epoch !== epoch) {
      this.map.set(topic, { seq, epoch });
      return true;
    }
    if (recovered === false && p.seq > seq) {
      // A position beyond the newest number: start again from it.
      this.map.set(topic, { seq, epoch });
      return true;
    }
    this.map.set(topic, { seq: p.seq, epoch });
    return false;
  }

  /** Messages `from..=to` of `topic` are gone: continue after `to`. */
  onGap(topic: string, to: number): void {
    const p = this.map.get(topic);
    if (!p || p.seq < to) this.map.set(topic, { seq: to, epoch: p?.epoch });
  }

  /** The topic's numbering started again in `epoch`; live messages follow `seq`. */
  onReset(topic: string, epoch: string, seq: number): void {
    this.map.set(topic, { seq, epoch });
  }

  /** Adopt a cursor the server sent (an event id, a poll's cursor). */
  adopt(cursor: string): void {
    for (const [topic, p] of parse(cursor)) {
      const cur = this.map.get(topic);
      if (!cur || cur.epoch !== p.epoch || cur.seq < p.seq) this.map.set(topic, p);
    }
  }

  /** The cursor of `topics` (those with a position). */
  cursor(topics: Iterable<string>): string {
    const parts: string[] = [];
    for (const t of topics) {
      const p = this.map.get(t);
      if (!p) continue;
      parts.push(p.epoch ? `${t}:${p.seq}@${p.epoch}` : `${t}:${p.seq}`);
    }
    return parts.join(",");
  }
}

/** Parse `topic:seq@epoch,…` (entries that do not parse are skipped). */
export function parse(cursor: string): [string, Position][] {
  const out: [string, Position][] = [];
  for (const item of cursor.split(",")) {
    const colon = item.lastIndexOf(":");
    if (colon <= 0) continue;
    const topic = item.slice(0, colon);
    const [n, epoch] = item.slice(colon + 1).split("@");
    const seq = Number(n);
    if (!Number.isSafeInteger(seq) || seq < 0) continue;
    out.push([topic, epoch ? { seq, epoch } : { seq }]);
  }
  return out;
}
