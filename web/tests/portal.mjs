// The portal in a real Chromium (Debian's, driven by playwright-core), against a running Roost
// with simulated devices: run by the end-to-end suite (tests/e2e/portal.rs), which starts the
// server, the devices and the users and passes them here.
//
//   ROOST_URL, ROOST_EMAIL, ROOST_PASSWORD   the server and its platform administrator
//   ROOST_SERIALS                            the organization's devices (serials, comma-separated)
//   ROOST_LISTED, ROOST_TOTAL                what the administrator's device list and dashboard count
//   ROOST_PENDING                            the serial of a device waiting to be claimed
//   ROOST_ORG_NAME                           the organization's name
//   ROOST_AGENT, ROOST_READER, ROOST_ORG_ADMIN, ROOST_ADVANCED, ROOST_USER_PASSWORD
//                                            its basic, read-only, org-admin and advanced users
//   ROOST_FIRMWARE, ROOST_FIRMWARE_VERSION   a firmware image to upload and roll out
//   CHROMIUM                                 the browser (default /usr/bin/chromium)
//   SCREENSHOTS                              where to write screenshots of the main pages
//
// Every page visited is scanned with axe-core: a serious or critical violation fails the run.
// Each check prints `ok: …`; the Rust side then checks what reached the devices.
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
const userPassword = env("ROOST_USER_PASSWORD");
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

async function signIn(page, email, password) {
  await page.goto(url);
  await page.getByRole("heading", { name: /sign in/i }).waitFor();
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Dashboard" }).waitFor();
}

async function signOut(page) {
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: /sign in/i }).waitFor();
}

const navLinks = async (page) =>
  (await page.getByRole("navigation", { name: "Main" }).getByRole("link").allTextContents()).map((t) => t.trim());

/// Finds a device by serial in the list and opens its page.
async function openDevice(page, serial) {
  await page.getByRole("link", { name: "Devices", exact: true }).click();
  await page.getByRole("heading", { name: "Devices" }).waitFor();
  await page.getByLabel("Search by").selectOption("serial");
  await page.getByRole("searchbox").fill(serial);
  await page.getByRole("button", { name: "Filter", exact: true }).click();
  await page.waitForFunction(() => document.querySelectorAll("tbody tr").length === 1);
  await page.getByRole("link", { name: serial }).click();
  await page.getByRole("heading", { name: new RegExp(serial) }).waitFor();
}

const browser = await chromium.launch({
  executablePath: env("CHROMIUM", "/usr/bin/chromium"),
  headless: true,
  // Root in a container has no user namespaces for Chromium's sandbox.
  args: ["--no-sandbox"],
});
try {
  // The axe script is evaluated into the portal's page, whose policy allows only its own.
  const context = await browser.newContext({
    locale: "en-US",
    viewport: { width: 1280, height: 800 },
    bypassCSP: true,
    permissions: ["clipboard-read", "clipboard-write"],
  });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);

  // ---- The platform administrator: the fleet, a filter, a claim, the language and theme.
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
  const card = page.locator(".totals .card").first();
  const total = `${await card.locator("span").textContent()}: ${await card.locator("strong").textContent()}`;
  check(total === `Devices: ${env("ROOST_TOTAL")}`, `the dashboard counts ${env("ROOST_TOTAL")} devices (${total})`);
  await accessible(page, "dashboard");
  await shoot(page, "dashboard");
  const adminLinks = await navLinks(page);
  check(adminLinks.includes("Pending devices") && adminLinks.includes("Administration"), `the platform admin's pages (${adminLinks})`);

  await page.getByRole("link", { name: "Devices", exact: true }).click();
  await page.getByRole("heading", { name: "Devices" }).waitFor();
  await page.locator("tbody tr").first().waitFor();
  const listed = Number(env("ROOST_LISTED"));
  check((await page.locator("tbody tr").count()) === listed, `the list shows the ${listed} devices`);
  await accessible(page, "devices");
  await shoot(page, "devices");
  await page.getByRole("searchbox").fill(serials[0]);
  await page.getByRole("button", { name: "Filter", exact: true }).click();
  await page.waitForURL(/serial=/);
  await page.waitForFunction(() => document.querySelectorAll("tbody tr").length === 1);
  check((await page.locator("tbody tr").textContent())?.includes(serials[0]), `filtered to ${serials[0]}`);
  // Saved under a name, and found again from the unfiltered list.
  await page.getByPlaceholder("Name this filter").fill("First box");
  await page.getByRole("button", { name: "Save filter" }).click();
  await page.goto(`${url}devices`);
  await page.waitForFunction((n) => document.querySelectorAll("tbody tr").length === n, listed);
  await page.getByRole("link", { name: "First box" }).click();
  await page.waitForFunction(() => document.querySelectorAll("tbody tr").length === 1);
  check(page.url().includes(`serial=${serials[0]}`), "a saved filter opens the filtered list");

  // Claiming the pending device, ticked in the list, into the organization.
  const pending = env("ROOST_PENDING");
  await page.getByRole("link", { name: "Pending devices" }).click();
  await page.getByRole("heading", { name: "Pending devices" }).waitFor();
  await page.getByTestId("pending").waitFor();
  check((await page.getByTestId("pending").textContent())?.includes(pending), `${pending} waits to be claimed`);
  await accessible(page, "pending devices");
  await shoot(page, "pending");
  await page.getByLabel("Claim into").selectOption({ label: env("ROOST_ORG_NAME") });
  await page.getByRole("checkbox", { name: `Select ${pending}` }).check();
  await page.getByRole("button", { name: "Claim the 1 ticked" }).click();
  await page.getByText(/1 claimed into/).waitFor();
  await page.getByText("No device is waiting to be claimed.").waitFor();
  check(true, `${pending} claimed from the pending list`);
  // A serial no device has: the claim says so.
  await page.getByLabel(/Serial numbers/).fill("NO-SUCH-SERIAL");
  await page.getByRole("button", { name: "Claim", exact: true }).click();
  await page.getByText(/Not pending: NO-SUCH-SERIAL/).waitFor();
  check(true, "a claim of an unknown serial names it");

  // Spanish, kept across a reload (and the session with it).
  await page.getByRole("link", { name: "Devices", exact: true }).click();
  await page.getByRole("heading", { name: "Devices" }).waitFor();
  await page.getByLabel("Language").selectOption("es");
  await page.getByRole("heading", { name: "Dispositivos" }).waitFor();
  await page.reload();
  await page.getByRole("heading", { name: "Dispositivos" }).waitFor();
  await page.locator("tbody tr").first().waitFor();
  check((await page.getByRole("link", { name: "Dispositivos pendientes" }).count()) === 1, "a reload keeps the language and the session");
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
  // The sign-in page speaks the language too, and switches back.
  await page.getByLabel("Idioma").selectOption("en");
  await page.getByRole("heading", { name: /sign in/i }).waitFor();
  await page.evaluate(() => localStorage.setItem("roost.theme", "light"));
  await page.setViewportSize({ width: 1280, height: 800 });

  // ---- A support agent (basic): finds a subscriber's device, sees it online, changes its Wi-Fi,
  // runs a ping and a speed test and reads the results; nothing beyond the role on screen.
  await signIn(page, env("ROOST_AGENT"), userPassword);
  check((await page.getByTestId("role").textContent()) === "Basic", "the agent is signed in as basic");
  const agentLinks = await navLinks(page);
  check(!agentLinks.includes("Pending devices") && !agentLinks.includes("Administration"), `the agent's pages (${agentLinks})`);
  await openDevice(page, serials[0]);
  check((await page.getByTestId("state").textContent())?.trim() === "Online", "the device is online");
  await page.getByRole("heading", { name: /Health/ }).waitFor();
  const cpu = await page.getByRole("img", { name: /^CPU: / }).getAttribute("aria-label");
  check(/^CPU: \d+ %$/.test(cpu ?? ""), `the device's health is charted (${cpu})`);
  await accessible(page, "device");
  await shoot(page, "device");
  // The form checks as the API does before sending.
  await page.getByLabel("Network name (SSID)").fill("Agent-Net");
  await page.getByLabel("Password", { exact: true }).fill("short");
  await page.getByRole("button", { name: "Apply" }).click();
  await page.getByText("The password is 8 to 63 printable characters").waitFor();
  check(true, "a short Wi-Fi password is refused next to its field");
  await page.getByLabel("Password", { exact: true }).fill("a long enough key");
  // The session ends as the form is sent (every API answer 401, the refresh too): sign-in comes
  // over the page, which keeps what was typed, and the form goes through once signed in again.
  await page.route("**/api/v1/**", (route) =>
    route.fulfill({
      status: 401,
      contentType: "application/problem+json",
      body: JSON.stringify({ title: "Unauthorized", status: 401, code: "unauthorized", detail: "the session ended" }),
    }),
  );
  await page.getByRole("button", { name: "Apply" }).click();
  const again = page.getByRole("dialog", { name: /sign in/i });
  await again.waitFor();
  await page.unroute("**/api/v1/**");
  check((await page.getByLabel("Network name (SSID)").inputValue()) === "Agent-Net", "an ended session keeps what was typed");
  await accessible(page, "sign-in over an ended session");
  await again.getByLabel("Email").fill(env("ROOST_AGENT"));
  await again.getByLabel("Password").fill(userPassword);
  await again.getByRole("button", { name: "Sign in" }).click();
  await again.waitFor({ state: "detached" });
  await page.getByRole("button", { name: "Apply" }).click();
  await page.getByText("Applied on the device.").waitFor({ timeout: 60_000 });
  check(true, "the Wi-Fi change reached the device");
  await page.getByRole("link", { name: "Diagnostics" }).click();
  await page.getByRole("heading", { name: "Ping" }).waitFor();
  await page.locator("#ping-title ~ label input").first().fill("192.0.2.1");
  await page.getByRole("button", { name: "Run" }).first().click();
  await page.waitForFunction(() => /ping\s*Complete/.test(document.querySelector('[data-testid="diagnostics"]')?.textContent ?? ""), null, { timeout: 120_000 });
  check(true, "the ping ran and its result is shown");
  await page.getByRole("button", { name: "Run" }).nth(2).click();
  await page.waitForFunction(
    () => {
      const text = document.querySelector('[data-testid="diagnostics"]')?.textContent ?? "";
      return /download\s*Complete[^]*Mbit\/s/.test(text) && /upload\s*Complete[^]*Mbit\/s/.test(text);
    },
    null,
    { timeout: 120_000 },
  );
  check(true, "the speed test ran both ways and its throughput is shown");
  await accessible(page, "device diagnostics");
  await shoot(page, "device-diagnostics");
  await page.getByRole("link", { name: "Tasks and faults" }).click();
  await page.getByTestId("tasks").waitFor();
  check(/configureWifi\s*Done/.test((await page.getByTestId("tasks").textContent()) ?? ""), "the Wi-Fi task is listed done");
  // A task queued from elsewhere (here the API, as a CRM would) shows up done on the open page:
  // the server's event stream, not a reload.
  await page.getByRole("status").filter({ hasText: "Live" }).waitFor();
  const token = await page.evaluate(() => JSON.parse(localStorage.getItem("roost.session") ?? "{}").access);
  const devicePath = new URL(page.url()).pathname;
  const queued = await fetch(`${url}api${devicePath.replace("/devices/", "/v1/devices/")}/refresh`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ path: "InternetGatewayDevice.DeviceInfo." }),
  });
  check(queued.status === 202, `a refresh queued through the API (${queued.status})`);
  await page.waitForFunction(() => /refreshObject\s*Done/.test(document.querySelector('[data-testid="tasks"]')?.textContent ?? ""));
  check(true, "the task finished elsewhere shows done on the open page, live");
  await accessible(page, "device tasks");
  await page.getByRole("link", { name: "Parameters" }).click();
  await page.getByRole("heading", { name: "Parameters" }).waitFor();
  await page.locator("tbody tr").first().waitFor();
  check((await page.getByRole("button", { name: /^Edit / }).count()) === 0, "the agent is offered no parameter edits");
  await accessible(page, "device parameters");
  await page.goto(`${url}admin`);
  await page.getByRole("heading", { name: "Dashboard" }).waitFor();
  check((await page.getByRole("heading", { name: "Administration" }).count()) === 0, "the agent cannot open administration");
  await signOut(page);

  // ---- A read-only user: sees the device, is offered nothing to do to it.
  await signIn(page, env("ROOST_READER"), userPassword);
  await openDevice(page, serials[1]);
  await page.getByRole("heading", { name: "Summary" }).waitFor();
  check((await page.getByRole("heading", { name: "Actions" }).count()) === 0, "read-only: no actions");
  check((await page.getByRole("heading", { name: "Wi-Fi" }).count()) === 0, "read-only: no Wi-Fi form");
  await page.getByRole("link", { name: "Diagnostics" }).click();
  await page.getByRole("heading", { name: "Results" }).waitFor();
  check((await page.getByRole("button", { name: "Run" }).count()) === 0, "read-only: no diagnostics to run");
  await signOut(page);

  // ---- The organization's administrator: a user and an API key.
  await signIn(page, env("ROOST_ORG_ADMIN"), userPassword);
  await page.getByRole("link", { name: "Administration" }).click();
  await page.getByRole("heading", { name: "Administration" }).waitFor();
  await page.getByTestId("users").waitFor();
  const newUser = page.locator("form", { has: page.getByRole("heading", { name: "New user" }) });
  // The API refuses a taken email: its message next to the email field.
  await newUser.getByLabel("Email").fill(env("ROOST_AGENT"));
  await newUser.getByLabel("Password").fill("another good password");
  await newUser.getByRole("button", { name: "Create user" }).click();
  const taken = await page.locator("#user-email-error").textContent();
  check(/exists already/.test(taken ?? ""), `a taken email is refused next to its field (${taken})`);
  await newUser.getByLabel("Email").fill("tech@isp-portal.example");
  await newUser.getByLabel("Role").selectOption({ label: "Basic" });
  await newUser.getByRole("button", { name: "Create user" }).click();
  await page.getByText("tech@isp-portal.example can sign in now.").waitFor();
  await page.getByTestId("users").getByText("tech@isp-portal.example").waitFor();
  check(true, "the org admin created a user");
  const roles = await newUser.getByLabel("Role").locator("option").allTextContents();
  check(!roles.includes("Platform admin"), `an org admin grants up to its own role (${roles})`);
  const newKey = page.locator("form", { has: page.getByRole("heading", { name: "New API key" }) });
  await newKey.getByLabel("Name").fill("CRM integration");
  await newKey.getByLabel("Role").selectOption({ label: "Read-only" });
  await newKey.getByRole("button", { name: "Create key" }).click();
  const key = (await page.getByTestId("new-key").textContent())?.trim() ?? "";
  await page.getByRole("button", { name: "Copy" }).click();
  check((await page.evaluate(() => navigator.clipboard.readText())) === key, "the new key is copied");
  const me = await fetch(`${url}api/v1/auth/me`, { headers: { authorization: `Bearer ${key}` } });
  const caller = await me.json();
  check(me.ok && caller.role === "read-only" && caller.kind === "api-key", `the key works, read-only (${JSON.stringify(caller)})`);
  await page.getByTestId("api-keys").getByText("CRM integration").waitFor();
  // A region under the ISP: a slug the API refuses is shown next to its field.
  const newOrg = page.locator("form", { has: page.getByRole("heading", { name: "New organization" }) });
  await newOrg.getByLabel("Name", { exact: true }).fill("North region");
  await newOrg.getByLabel("Short name (in URLs)").fill("North Region!");
  await newOrg.getByRole("button", { name: "Create organization" }).click();
  await page.locator("#org-slug-error").waitFor();
  check(true, `a bad slug is refused next to its field (${await page.locator("#org-slug-error").textContent()})`);
  await newOrg.getByLabel("Short name (in URLs)").fill("isp-portal-north");
  await newOrg.getByRole("button", { name: "Create organization" }).click();
  await page.getByText("North region was created.").waitFor();
  await page.getByTestId("orgs").getByText("North region").waitFor();
  check(true, "the region is in the tree");
  // A webhook to Roost itself is refused next to its URL.
  const newHook = page.locator("form", { has: page.getByRole("heading", { name: "New webhook" }) });
  await newHook.getByLabel("URL").fill(`${url}api/v1/hook`);
  await newHook.getByRole("button", { name: "Create webhook" }).click();
  await page.locator("#webhook-url-error").waitFor();
  check(true, `a webhook to Roost itself is refused (${await page.locator("#webhook-url-error").textContent()})`);
  // One to a receiver that is down; a time range of the organization's events is sent to it
  // again (a range that ends before it starts is refused next to its end).
  await newHook.getByLabel("URL").fill("http://127.0.0.1:9/roost-events");
  await newHook.getByRole("button", { name: "Create webhook" }).click();
  await page.getByTestId("webhook-secret").waitFor();
  await page.getByTestId("webhooks").getByRole("row", { name: /127\.0\.0\.1:9\/roost-events/ }).getByRole("button", { name: "Deliveries" }).click();
  const replayForm = page.locator("form", { has: page.getByRole("heading", { name: "Send a time range again" }) });
  const local = (ms) => {
    const t = new Date(Date.now() + ms);
    const two = (n) => String(n).padStart(2, "0");
    return `${t.getFullYear()}-${two(t.getMonth() + 1)}-${two(t.getDate())}T${two(t.getHours())}:${two(t.getMinutes())}:${two(t.getSeconds())}`;
  };
  await replayForm.getByLabel("From").fill(local(-3_600_000));
  await replayForm.getByLabel("To (now when empty)").fill(local(-7_200_000));
  await replayForm.getByRole("button", { name: "Send again" }).click();
  const backwards = await page.locator("#replay-to-error").textContent();
  check(/after from/.test(backwards ?? ""), `a range ending before it starts is refused next to its end (${backwards})`);
  await replayForm.getByLabel("To (now when empty)").fill("");
  await replayForm.getByRole("button", { name: "Send again" }).click();
  const requeued = (await replayForm.getByText(/events queued for the receiver\.$/).textContent()) ?? "";
  check(Number(requeued.split(" ")[0].replace(/\D/g, "")) > 0, `the last hour's events are queued again (${requeued})`);
  await page.getByTestId("audit").getByText("POST /api/v1/users").first().waitFor();
  check(true, "the audit log shows the user created");
  await accessible(page, "administration");
  await shoot(page, "administration");
  // The switcher narrows the fleet to the (empty) region, and back.
  await page.getByLabel("Showing").selectOption("isp-portal-north");
  await page.getByRole("link", { name: "Devices", exact: true }).click();
  await page.getByText("No device matches.").waitFor();
  await page.getByLabel("Showing").selectOption("");
  await page.locator("tbody tr").first().waitFor();
  check(true, "the organization switcher narrows the device list");
  // Their own password: the current one is checked by the API, next to its field.
  await page.getByRole("link", { name: env("ROOST_ORG_ADMIN") }).click();
  await page.getByRole("heading", { name: "My account" }).waitFor();
  await page.getByLabel("Current password").fill("not my password");
  await page.getByLabel("New password", { exact: true }).fill("a brand new passphrase");
  await page.getByLabel("New password again").fill("a brand new passphrase");
  await page.getByRole("button", { name: "Change password" }).click();
  const wrong = await page.locator("#account-current_password-error").textContent();
  check(/current_password/.test(wrong ?? ""), `a wrong current password is refused next to its field (${wrong})`);
  await accessible(page, "account");
  await page.getByLabel("Current password").fill(userPassword);
  await page.getByRole("button", { name: "Change password" }).click();
  await page.getByText("Your password changed. Sign in with the new one.").waitFor();
  await page.getByLabel("Email").fill(env("ROOST_ORG_ADMIN"));
  await page.getByLabel("Password").fill("a brand new passphrase");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Dashboard" }).waitFor();
  check(true, "the new password signs in");
  await signOut(page);

  // ---- An advanced user: a subscriber linked to its device, a parameter written in place, a
  // firmware image uploaded and rolled out, followed to the end on the open page.
  await signIn(page, env("ROOST_ADVANCED"), userPassword);
  await page.getByRole("link", { name: "Subscribers" }).click();
  await page.getByRole("heading", { name: "Subscribers", level: 1 }).waitFor();
  const newSubscriber = page.locator("form", { has: page.getByRole("heading", { name: "New subscriber" }) });
  await newSubscriber.getByLabel("Username", { exact: true }).fill("carol smith");
  await newSubscriber.getByLabel("Plan", { exact: true }).fill("gold");
  await newSubscriber.getByLabel("PPPoE username").fill("carol@isp");
  await newSubscriber.getByLabel("PPPoE password").fill("carols-pw");
  await newSubscriber.getByRole("button", { name: "Create subscriber" }).click();
  const badName = await page.locator("#subscriber-username-error").textContent();
  check(/letters, digits/.test(badName ?? ""), `a username that is no tag is refused next to its field (${badName})`);
  await newSubscriber.getByLabel("Username", { exact: true }).fill("carol");
  await newSubscriber.getByRole("button", { name: "Create subscriber" }).click();
  await page.getByText("carol was created.").waitFor();
  await page.getByTestId("subscribers").getByRole("link", { name: "carol" }).click();
  await page.getByRole("heading", { name: "carol", level: 2 }).waitFor();
  const linkForm = page.locator("form", { has: page.getByRole("heading", { name: "Link a device" }) });
  await linkForm.getByLabel("Serial number").fill(serials[2]);
  await linkForm.getByRole("button", { name: "Link" }).click();
  await page.getByText(/^Linked: /).waitFor();
  check(true, `carol's device ${serials[2]} is linked`);
  await accessible(page, "subscribers");
  await shoot(page, "subscribers");

  await page.getByRole("link", { name: "Provisioning" }).click();
  await page.getByRole("heading", { name: "Provisioning", level: 1 }).waitFor();
  const presetForm = page.locator("form", { has: page.getByRole("heading", { name: "Create or change a preset" }) });
  await presetForm.getByLabel("Name", { exact: true }).fill("nightly-refresh");
  await presetForm.getByLabel("Provision").fill("no-such-provision");
  await presetForm.getByRole("button", { name: "Save" }).click();
  const unknown = await page.locator("#preset-provision-error").textContent();
  check(/no provision named/.test(unknown ?? ""), `an unknown provision is refused next to its field (${unknown})`);
  await presetForm.getByLabel("Provision").fill("refresh");
  await presetForm.getByLabel(/^Arguments/).fill("path=InternetGatewayDevice.DeviceInfo.\nmax-age=3600");
  await presetForm.getByLabel("Inform events").fill("2 PERIODIC");
  await presetForm.getByRole("button", { name: "Save" }).click();
  await page.getByText("nightly-refresh is saved.").waitFor();
  await page.getByTestId("presets").getByText("nightly-refresh").waitFor();
  check(true, "a preset is created from the form");
  await accessible(page, "provisioning");
  await shoot(page, "provisioning");
  // Which adapter handles the organization's devices, kind by kind; a kind's count lists them.
  const usage = page.getByTestId("adapter-usage");
  await usage.locator("tbody tr").first().waitFor();
  const kindRow = usage.locator("tbody tr").first();
  const adapterName = ((await kindRow.locator("td").last().textContent()) ?? "").trim();
  check(adapterName !== "" && adapterName !== "No adapter", `a shipped adapter handles the first kind (${adapterName})`);
  const kindCount = Number(((await kindRow.getByRole("link").textContent()) ?? "").trim());
  await kindRow.getByRole("link").click();
  await page.getByTestId("kind-filter").waitFor();
  await page.locator("tbody tr").first().waitFor();
  const kindListed = await page.locator("tbody tr").count();
  check(kindListed === kindCount, `the kind's link lists its ${kindCount} devices (${kindListed})`);

  await openDevice(page, serials[1]);
  await page.getByRole("link", { name: "Parameters" }).click();
  await page.getByLabel("Path starts with").fill("InternetGatewayDevice.ManagementServer.PeriodicInformInterval");
  await page.getByRole("button", { name: "Filter", exact: true }).click();
  const interval = "InternetGatewayDevice.ManagementServer.PeriodicInformInterval";
  await page.getByRole("button", { name: `Edit ${interval}` }).click();
  await page.getByLabel(interval, { exact: true }).fill("ten minutes");
  await page.getByRole("button", { name: "Write" }).click();
  await page.getByText("A whole number, 0 or more").waitFor();
  check(true, "a value of the wrong type is refused next to it");
  await page.getByLabel(interval, { exact: true }).fill("600");
  await page.getByRole("button", { name: "Write" }).click();
  await page.getByText("Written to the device.").waitFor({ timeout: 60_000 });
  check(true, "the parameter was written to the device");

  // Two devices ticked in the list, refreshed in one bulk action.
  await page.getByRole("link", { name: "Devices", exact: true }).click();
  await page.getByRole("heading", { name: "Devices" }).waitFor();
  await page.locator("tbody tr").first().waitFor();
  await page.getByRole("checkbox", { name: `Select ${serials[0]}` }).check();
  await page.getByRole("checkbox", { name: `Select ${serials[1]}` }).check();
  await page.getByText("2 selected").waitFor();
  await page.getByRole("button", { name: "Run on the selected" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Refresh" }).click();
  await page.getByText("Started on 2 devices, at the organization's pace.").waitFor();
  check(true, "a bulk refresh of two ticked devices started");
  // Followed on its own page to the end, without a reload, and listed among the bulk actions.
  await page.getByRole("link", { name: "Follow its progress" }).click();
  await page.getByRole("heading", { name: "Bulk action: refresh" }).waitFor();
  await page.waitForFunction(() => document.querySelector('[data-testid="bulk-state"]')?.textContent === "Completed", null, { timeout: 60_000 });
  const bulkCounts = (await page.getByTestId("bulk-counts").textContent()) ?? "";
  check(bulkCounts.trim() === "Done 2", `both devices were refreshed (${bulkCounts})`);
  check((await page.getByTestId("bulk-devices").locator("tbody tr").count()) === 2, "the action's two devices are listed");
  await accessible(page, "bulk action");
  await shoot(page, "bulk-action");
  await page.getByRole("link", { name: "Bulk actions" }).first().click();
  await page.getByTestId("bulk-jobs").getByRole("link", { name: "refresh" }).first().waitFor();
  await accessible(page, "bulk actions");
  check(true, "the bulk action completed on its open page and is listed");

  const version = env("ROOST_FIRMWARE_VERSION");
  await page.getByRole("link", { name: "Firmware" }).click();
  await page.getByRole("heading", { name: "Firmware", level: 1 }).waitFor();
  const uploadForm = page.locator("form", { has: page.getByRole("heading", { name: "Upload a file" }) });
  await uploadForm.getByLabel("File", { exact: true }).setInputFiles(env("ROOST_FIRMWARE"));
  await uploadForm.getByLabel("Software version").fill(version);
  await uploadForm.getByLabel("Product class").fill("EG8145V5");
  await page.getByRole("button", { name: "Upload", exact: true }).click();
  await page.getByText(/ is stored\.$/).waitFor();
  await page.getByTestId("files").getByText(version).first().waitFor();
  check(true, "the image is stored");
  const newRollout = page.locator("form", { has: page.getByRole("heading", { name: "New rollout" }) });
  await newRollout.getByLabel("Image").selectOption({ label: `eg8145v5-${version}.bin (${version})` });
  await newRollout.getByLabel("Product class").fill("EG8145V5");
  await newRollout.getByLabel("Canary").fill("1");
  await newRollout.getByLabel("Devices per batch").fill("2");
  await newRollout.getByLabel("Seconds between batches").fill("0");
  await newRollout.getByRole("button", { name: "Start rollout" }).click();
  await page.getByRole("heading", { name: `Rollout of ${version}` }).waitFor();
  await accessible(page, "rollout");
  // Followed without a reload: the state and the batches move on the open page.
  await page.waitForFunction(() => document.querySelector('[data-testid="rollout-state"]')?.textContent === "completed", null, { timeout: 180_000 });
  const batches = (await page.getByTestId("batches").textContent()) ?? "";
  check(/Canary\s*1\s*Passed 1/.test(batches), `the canary passed (${batches})`);
  await shoot(page, "rollout");
  check(true, "the rollout completed on the open page");
  await signOut(page);
} finally {
  await browser.close();
}
