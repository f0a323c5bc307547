// How long the portal's device list takes to show its first page (docs/BENCHMARKS.md): run by
// scripts/bench-api.sh against a server holding its seeded fleet. Each run is a first load in a
// fresh browser context (no cache; the session already signed in, as after a sign-in): from
// navigation start to the first page's rows in the DOM, as the page itself measures it
// (`performance.now()`), and as the driver sees it around `goto`.
//
//   ROOST_URL, CALLERS ("label=email=password;…"), RUNS (default 10), CHROMIUM
import { chromium } from "playwright-core";

const url = process.env.ROOST_URL;
const runs = Number(process.env.RUNS ?? 10);
const callers = (process.env.CALLERS ?? "").split(";").filter(Boolean).map((c) => c.split("="));
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: ["--no-sandbox"] });
const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
try {
  for (const [label, email, password] of callers) {
    const login = await fetch(`${url}api/v1/auth/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ email, password }),
    });
    if (!login.ok) throw new Error(`${label}: sign-in ${login.status}`);
    const tokens = await login.json();
    const session = JSON.stringify({ access: tokens.access_token, refresh: tokens.refresh_token });
    const inPage = [];
    const around = [];
    let rows = 0;
    for (let run = 0; run < runs; run++) {
      const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      await context.addInitScript((value) => localStorage.setItem("roost.session", value), session);
      const page = await context.newPage();
      const started = performance.now();
      await page.goto(`${url}devices`);
      await page.waitForFunction(() => document.querySelectorAll("tbody tr").length > 0, null, { timeout: 30_000 });
      around.push(performance.now() - started);
      inPage.push(await page.evaluate(() => performance.now()));
      rows = await page.locator("tbody tr").count();
      await context.close();
    }
    inPage.sort((a, b) => a - b);
    around.sort((a, b) => a - b);
    const ms = (v) => `${Math.round(v)} ms`;
    console.log(
      `  portal first page (${label}, ${rows} rows, ${runs} fresh loads): in page median ${ms(quantile(inPage, 0.5))}, ` +
        `max ${ms(inPage[inPage.length - 1])}; driver median ${ms(quantile(around, 0.5))}, max ${ms(around[around.length - 1])}`,
    );
  }
} finally {
  await browser.close();
}
