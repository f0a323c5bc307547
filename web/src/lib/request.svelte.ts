// One way to call the API from a page: the answer, or the refusal as the API's problem (a
// network failure becomes a problem too, so a page always has something to say), and for
// forms, the refusal placed next to the field it names (`Problem.field`).
import type { Problem } from "../api/client";
import { i18n } from "./i18n.svelte";

export type Outcome<T> = { ok: true; data: T; status: number } | { ok: false; problem: Partial<Problem> };

/// Runs one `api.GET/POST/...` call.
export async function attempt<T>(
  send: () => Promise<{ data?: T; error?: unknown; response: Response }>,
): Promise<Outcome<T>> {
  try {
    const { data, error, response } = await send();
    if (response.ok) return { ok: true, data: data as T, status: response.status };
    return { ok: false, problem: (error ?? { status: response.status, title: response.statusText }) as Partial<Problem> };
  } catch {
    return { ok: false, problem: { detail: i18n.t("error.network") } };
  }
}

/// The message of a refusal, for a person: the problem's `detail`, else its title.
export function message(problem: Partial<Problem>): string {
  return problem.detail ?? problem.title ?? i18n.t("error.network");
}

/// A form's refusals: by field where the API named one the form has, else for the whole form.
export class FormErrors {
  fields = $state<Record<string, string>>({});
  form = $state("");

  /// `name` keeps the ids of two forms' fields apart on one page.
  constructor(
    readonly name: string,
    private readonly known: readonly string[],
  ) {}

  clear() {
    this.fields = {};
    this.form = "";
  }

  show(problem: Partial<Problem>) {
    this.clear();
    const field = problem.field ?? undefined;
    if (field && this.known.includes(field)) this.fields = { [field]: message(problem) };
    else this.form = message(problem);
  }

  /// The `aria-describedby` of a field's input: its error when it has one.
  describedBy(field: string): string | undefined {
    return this.fields[field] ? this.id(field) : undefined;
  }

  id(field: string): string {
    return `${this.name}-${field}-error`;
  }
}
