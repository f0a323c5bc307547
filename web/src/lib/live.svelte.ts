// Live updates: the server's events for this caller (`GET /api/v1/events/stream`, Server-Sent
// Events) on one connection per tab, read with fetch so the access token travels in a header,
// never in a URL, and is refreshed like any request's. Pages subscribe to the types (and the
// device) they show and reload that part when one comes; the stream asks the server only for
// the types someone here listens to, and reconnects when it ends (every ten minutes, by design)
// or breaks.
import { authorized } from "../api/client";
import { session } from "./session.svelte";
import { throttled } from "./throttle";

export interface LiveEvent {
  id: string;
  type: string;
  org: string | null;
  subject: string;
  payload: unknown;
  time: string;
}

interface Listener {
  /// Types as the server matches them: `task.done`, `task.*`.
  types: string[];
  /// Only events about this device.
  subject?: string;
  handle: (event: LiveEvent | null) => void;
}

/// Whether a listener wants an event (`null`: events were missed; everyone reloads).
export function matches(listener: Pick<Listener, "types" | "subject">, event: LiveEvent): boolean {
  const typed = listener.types.some((pattern) =>
    pattern.endsWith(".*") ? event.type.startsWith(pattern.slice(0, -1)) : pattern === event.type,
  );
  return typed && (listener.subject === undefined || listener.subject === event.subject);
}

/// Splits a Server-Sent Events text into complete events, and what is left of an unfinished one.
export function parse(buffer: string): { events: { event: string; data: string }[]; rest: string } {
  const blocks = buffer.split(/\r?\n\r?\n/);
  const rest = blocks.pop() ?? "";
  const events = blocks.flatMap((block) => {
    let event = "message";
    const data: string[] = [];
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    return data.length ? [{ event, data: data.join("\n") }] : [];
  });
  return { events, rest };
}

class Live {
  connected = $state(false);
  private listeners = new Set<Listener>();
  private controller: AbortController | null = null;
  private types = "";

  /// Listens until the returned function is called (a page's `$effect` cleanup).
  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    this.restartIfNeeded();
    return () => {
      this.listeners.delete(listener);
      this.restartIfNeeded();
    };
  }

  /// Runs `run` once per burst of events of `types`, `ms` after the burst's first (a page that
  /// reads itself again), until the returned function is called.
  reloadOn(types: string[], run: () => void, ms: number): () => void {
    const soon = throttled(run, ms);
    const stop = this.subscribe({ types, handle: soon });
    return () => {
      stop();
      soon.cancel();
    };
  }

  /// Connects again if the stream stopped because the session ended (signed in again since).
  resume() {
    if (!this.controller && this.types) this.run(this.types);
  }

  private wanted(): string {
    return [...new Set([...this.listeners].flatMap((l) => l.types))].sort().join(",");
  }

  private restartIfNeeded() {
    const types = this.wanted();
    if (types === this.types && this.controller) return;
    this.controller?.abort();
    this.controller = null;
    this.types = types;
    if (types) this.run(types);
  }

  private async run(types: string) {
    const controller = new AbortController();
    this.controller = controller;
    let failures = 0;
    while (!controller.signal.aborted && session.signedIn) {
      try {
        const request = new Request(`/api/v1/events/stream?types=${encodeURIComponent(types)}`, {
          headers: { accept: "text/event-stream" },
          signal: controller.signal,
        });
        const response = await authorized(request);
        if (!response.ok || !response.body) throw new Error(`event stream: ${response.status}`);
        this.connected = true;
        failures = 0;
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          const parsed = parse(buffer + value);
          buffer = parsed.rest;
          for (const { event, data } of parsed.events) this.dispatch(event, data);
        }
      } catch {
        if (controller.signal.aborted) break;
        failures += 1;
      } finally {
        this.connected = false;
      }
      // Ended by the server (reconnect at once) or broken (back off, up to 30 s).
      if (failures) await new Promise((r) => setTimeout(r, Math.min(30_000, 1000 * 2 ** failures)));
    }
    if (this.controller === controller) this.controller = null;
  }

  private dispatch(event: string, data: string) {
    if (event === "lagged") {
      for (const listener of this.listeners) listener.handle(null);
      return;
    }
    let parsed: LiveEvent;
    try {
      parsed = JSON.parse(data) as LiveEvent;
    } catch {
      return;
    }
    for (const listener of this.listeners) if (matches(listener, parsed)) listener.handle(parsed);
  }
}

export const live = new Live();
