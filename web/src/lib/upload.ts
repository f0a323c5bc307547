// A file sent to the API with its progress (fetch reports none for uploads; XMLHttpRequest
// does), authenticated like every request: an expired access token is refreshed once by a
// cheap authorized call, and the upload sent again.
import { api } from "../api/client";
import type { Problem } from "../api/client";
import { session } from "./session.svelte";

export type Uploaded<T> = { ok: true; data: T } | { ok: false; problem: Partial<Problem> };

function send<T>(url: string, file: File, progress: (fraction: number) => void): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve) => {
    const request = new XMLHttpRequest();
    request.open("POST", url);
    request.setRequestHeader("authorization", `Bearer ${session.tokens?.access ?? ""}`);
    request.setRequestHeader("content-type", "application/octet-stream");
    request.upload.onprogress = (event) => event.lengthComputable && progress(event.loaded / event.total);
    request.onload = () => {
      let body: unknown = null;
      try {
        body = JSON.parse(request.responseText) as T;
      } catch {
        body = { title: request.statusText };
      }
      resolve({ status: request.status, body });
    };
    request.onerror = () => resolve({ status: 0, body: null });
    request.send(file);
  });
}

export async function upload<T>(url: string, file: File, progress: (fraction: number) => void): Promise<Uploaded<T>> {
  // The server refuses an expired token before it reads the body, and the connection is often
  // reset under a large one before the 401 is read: the token is made fresh first.
  await api.GET("/api/v1/auth/me").catch(() => undefined);
  let answer = await send<T>(url, file, progress);
  if (answer.status === 401) {
    // Any authorized call refreshes the token pair when it can.
    await api.GET("/api/v1/auth/me").catch(() => undefined);
    if (session.signedIn) answer = await send<T>(url, file, progress);
  }
  if (answer.status >= 200 && answer.status < 300) return { ok: true, data: answer.body as T };
  return { ok: false, problem: (answer.body ?? {}) as Partial<Problem> };
}
