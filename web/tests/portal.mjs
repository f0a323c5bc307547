// The portal in a real Chromium (Debian's, driven by playwright-core), against a running Roost
// with simulated devices: run by the end-to-end suite (tests/e2e/portal.rs), which starts the
// server and the devices and passes them here.
//
//   ROOST_URL, ROOST_EMAIL, ROOST_PASSWORD   the server and an administrator to sign in as
//   ROOST_SERIALS                            serial numbers of the devices it has, comma-separated
//   CHROMIUM                                 the browser (default /usr/bin/chromium)
//   SCREENSHOTS                              where to write screenshots of the main pages
//
// Every page visited is scanned with axe-core: a serious or critical violation fails the run.
import { readFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
};
const url = env("ROOST_URL");
const serials = env("ROOST_SERIALS").split(",");
const screenshots = process.env.SCREENSHOTS;
if (screenshots) mkdirSync(screenshots, { recursive: true });

function check(condition, what) {
  if (!condition) throw new Error(`expected: ${what}`);
  console.log(`ok: ${what}`);
}

async function accessible(page, name) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(() => globalThis.axe.run(document, { resultTypes: ["violations"] }));
  const serious = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  for (const violation of serious) {
    console.error(`${name}: ${violation.id} (${violation.impact}): ${violation.help}`);
    for (const node of violation.nodes.slice(0, 5)) console.error(`  ${node.target.join(" ")}`);
  }
  check(serious.length === 0, `${name}: no serious or critical accessibility violation`);
}

async function shoot(page, name) {
  if (screenshots) await page.screenshot({ path: `${screenshots}/${name}.png`, fullPage: true });
}

const browser = await chromium.launch({
  executablePath: env("CHROMIUM", "/usr/bin/chromium"),
  headless: true,
  // Root in a container has no user namespaces for Chromium's sandbox.
  args: ["--no-sandbox"],
});
try {
  // The axe script is evaluated into the portal's page, whose policy allows only its own.
  const context = await browser.newContext({ locale: "en-US", viewport: { width: 1280, height: 800 }, bypassCSP: true });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);

  await page.goto(url);
  await page.getByRole("heading", { name: /sign in/i }).waitFor();
  await accessible(page, "sign-in");
  await shoot(page, "sign-in");

  // A wrong password: the API's own message, next to the form.
  await page.getByLabel("Email").fill(env("ROOST_EMAIL"));
  await page.getByLabel("Password").fill("not the password");
  await page.getByRole("button", { name: "Sign in" }).click();
  const refusal = await page.getByRole("alert").textContent();
  check(/password/i.test(refusal ?? ""), `a refused sign-in says why (${refusal})`);

  await page.getByLabel("Password").fill(env("ROOST_PASSWORD"));
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Dashboard" }).waitFor();
  const totals = await page.locator(".totals").textContent();
  check(totals?.includes(String(serials.length)), `the dashboard counts ${serials.length} devices (${totals})`);
  await accessible(page, "dashboard");
  await shoot(page, "dashboard");

  // The device list, then filtered by a serial; the filter is in the address.
  await page.getByRole("link", { name: "Devices" }).click();
  await page.getByRole("heading", { name: "Devices" }).waitFor();
  await page.locator("tbody tr").first().waitFor();
  check((await page.locator("tbody tr").count()) === serials.length, `the list shows the ${serials.length} devices`);
  await accessible(page, "devices");
  await shoot(page, "devices");
  await page.getByLabel("Serial number").fill(serials[0]);
  await page.getByRole("button", { name: "Filter" }).click();
  await page.waitForURL(/serial=/);
  await page.waitForFunction(() => document.querySelectorAll("tbody tr").length === 1);
  check((await page.locator("tbody tr").textContent())?.includes(serials[0]), `filtered to ${serials[0]}`);

  // Spanish, kept across a reload (and the session with it).
  await page.getByLabel("Language").selectOption("es");
  await page.getByRole("heading", { name: "Dispositivos" }).waitFor();
  await page.reload();
  await page.getByRole("heading", { name: "Dispositivos" }).waitFor();
  check((await page.locator("tbody tr").count()) === 1, "a reload keeps the page, its filter and the session");
  await page.getByLabel("Tema").selectOption("dark");
  await accessible(page, "devices, Spanish, dark");
  await shoot(page, "devices-es-dark");

  // A phone-sized screen still reaches everything.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.getByRole("link", { name: "Panel" }).click();
  await page.getByRole("heading", { name: "Panel" }).waitFor();
  await shoot(page, "dashboard-phone");

  await page.getByRole("button", { name: "Cerrar sesión" }).click();
  await page.getByRole("heading", { name: /iniciar sesión/i }).waitFor();
  check(!(await page.evaluate(() => localStorage.getItem("roost.session"))), "signed out: no token kept");
} finally {
  await browser.close();
}
