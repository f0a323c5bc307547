// A job the server runs over many devices (a rollout, a bulk action), read as its page shows
// it: one request gives the job's state and a page of its devices. The pager moves through the
// devices; the job's state is the latest answer's (a slow read overtaken by a newer one is
// dropped, or the page would show a state already left).
import { Paged, type Page } from "./paged.svelte";
import type { Outcome } from "./request.svelte";

export class Job<D extends { device_page: Page<R> }, R> {
  detail = $state<D | null>(null);
  /// Why the job could not be read.
  error = $state("");
  readonly devices: Paged<R>;
  private asked = 0;

  constructor(read: (cursor: string | undefined) => Promise<Outcome<D>>) {
    this.devices = new Paged<R>(async (cursor) => {
      const mine = ++this.asked;
      const outcome = await read(cursor);
      if (!outcome.ok) return outcome;
      if (mine === this.asked) this.detail = outcome.data;
      return { ...outcome, data: outcome.data.device_page };
    });
  }

  load = async () => {
    this.error = "";
    await this.devices.load();
    if (this.devices.error) this.error = this.devices.error;
  };

  /// Reads the job again every `ms` (starting a device sends no event): call in an `$effect`
  /// while the job is under way, which stops it when it returns.
  poll(ms: number): () => void {
    const timer = setInterval(this.load, ms);
    return () => clearInterval(timer);
  }
}
