// Drives the dashboard in headless Chromium, as an operator would. tests/api/dashboard.rs seeds
// a deployment, starts the web and worker processes and runs this with:
//   BASE, ADMIN_TOKEN, VIEWER_TOKEN, REQUEST_ID, CAMPAIGN_ID, SHOTS (a directory), CHROMIUM.
// Every step that fails throws; the exit status says whether all passed. It prints one line
// per step so a failure shows where it happened.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const BASE = env("BASE");
const SHOTS = env("SHOTS");
mkdirSync(SHOTS, { recursive: true });

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  console.log(`ok   ${what}`);
}

async function signIn(context, name, token) {
  const page = await context.newPage();
  await page.goto(`${BASE}/dashboard/schedules`);
  check(page.url().includes("/dashboard/login"), `${name}: an unsigned visit is sent to the sign-in page`);
  await page.getByLabel("Your name").fill(name);
  await page.getByLabel("Token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(`${BASE}/dashboard`);
  check((await page.locator("h1").innerText()) === "Overview", `${name}: signed in, the overview shows`);
  return page;
}

async function visit(page, path, title, expected, shot) {
  const response = await page.goto(`${BASE}${path}`);
  check(response.status() === 200, `${path} answers 200`);
  check((await page.locator("h1").innerText()).includes(title), `${path} is titled ${title}`);
  const text = await page.locator("main").innerText();
  for (const e of expected) check(text.includes(e), `${path} shows "${e}"`);
  if (shot) await page.screenshot({ path: `${SHOTS}/${shot}.png`, fullPage: true });
}

const browser = await chromium.launch({
  executablePath: env("CHROMIUM"),
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
try {
  // An admin in New York, at 1280 px.
  const admin = await browser.newContext({ viewport: { width: 1280, height: 900 }, timezoneId: "America/New_York" });
  const page = await signIn(admin, "Ops", env("ADMIN_TOKEN"));
  page.on("dialog", (d) => d.accept());

  // Keyboard: the first Tab reaches the skip link, which moves focus to the content.
  await page.keyboard.press("Tab");
  check((await page.evaluate(() => document.activeElement.textContent)) === "Skip to content", "the first Tab focuses the skip link");
  await page.keyboard.press("Enter");
  check((await page.evaluate(() => document.activeElement.id)) === "content", "the skip link moves focus to the content");

  await visit(page, "/dashboard", "Overview", ["Queues", "default", "Upstreams", "Token expiry"], "overview");
  // Live updates: the live region is refreshed without a reload.
  await page.waitForFunction(() => document.getElementById("live").hasAttribute("data-updated"), null, { timeout: 15000 });
  check(true, "the overview's live region updated without a reload");
  // A hidden tab stops refreshing: the region keeps its last update while hidden.
  await page.evaluate(() => {
    Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
    document.dispatchEvent(new Event("visibilitychange"));
  });
  const before = await page.locator("#live").getAttribute("data-updated");
  await page.waitForTimeout(6500);
  check((await page.locator("#live").getAttribute("data-updated")) === before, "a hidden tab makes no live update");
  await page.evaluate(() => {
    Object.defineProperty(document, "hidden", { configurable: true, get: () => false });
    document.dispatchEvent(new Event("visibilitychange"));
  });
  await page.waitForFunction((b) => document.getElementById("live").getAttribute("data-updated") !== b, before, { timeout: 10000 });
  check(true, "showing the tab again refreshes it at once");

  await visit(page, "/dashboard/schedules", "Schedules", ["sync_mailjet_stats", "Run history", "3 campaigns synced"], "schedules");
  // Times are shown in the viewer's zone, with UTC on hover.
  const time = page.locator("main td time").first();
  check((await time.getAttribute("title")).endsWith("UTC"), "a time has its UTC value on hover");
  check(/E[SD]T/.test(await time.innerText()), "a time is shown in the viewer's zone (New York)");
  await visit(page, "/dashboard/campaigns", "Campaigns", ["Spring launch", "C0SPRING"], "campaigns");
  await visit(page, `/dashboard/campaigns/${env("CAMPAIGN_ID")}`, "Spring launch", ["engagement score", "Open, click and bounce rates"], "campaign");
  await visit(page, "/dashboard/webhooks", "Webhooks", ["mailjet", "open", "Rejected events", "missing field"], "webhooks");
  await visit(page, "/dashboard/approvals", "Approvals", ["spring-launch", "legal", "pending"], "approvals");
  await visit(page, "/dashboard/analytics", "Analytics", ["engagement score", "Top campaigns", "Bottlenecks"], "analytics");

  // Dead letters: inspect the dead probe, then retry it (its outage is over) from the list.
  await visit(page, "/dashboard/dead", "Dead letters", ["diagnostics_probe", "failing on purpose"], "dead-letters");
  await page.getByRole("link", { name: "Inspect" }).first().click();
  const inspected = await page.locator("main").innerText();
  check(inspected.includes("Attempts") && inspected.includes("fail_while_broken"), "a dead task shows its attempts and payload");
  check((await page.locator("main tbody tr").count()) >= 3, "every failed attempt is listed");
  await page.screenshot({ path: `${SHOTS}/dead-task.png`, fullPage: true });
  await page.goto(`${BASE}/dashboard/dead`);
  await page.getByLabel(/^Select task /).first().check();
  await page.getByRole("button", { name: "Retry selected" }).click();
  check((await page.locator(".notice").innerText()).includes("Sent 1 of 1"), "retrying the selected dead task sends it back");

  // Queues: pause and resume one on every worker.
  await visit(page, "/dashboard/queues", "Queues", ["default", "running"], "queues");
  const row = page.locator("tr", { has: page.locator("td", { hasText: /^default$/ }) });
  await row.getByRole("button", { name: "Pause" }).click();
  check((await page.locator(".notice").innerText()).includes("Paused queue default"), "pausing a queue is confirmed");
  check((await row.innerText()).includes("paused"), "the queue shows as paused, with who paused it");
  await row.getByRole("button", { name: "Resume" }).click();
  check((await page.locator(".notice").innerText()).includes("Resumed queue default"), "resuming it is confirmed");

  // Email requests: the request's progress, a recipient search, then cancel it.
  await visit(page, "/dashboard/email-requests", "Email requests", ["spring-launch", "1 sent", "2 pending"], "email-requests");
  await page.goto(`${BASE}/dashboard/email-requests/${env("REQUEST_ID")}`);
  const masked = await page.locator("main tbody").last().innerText();
  check(masked.includes("…@example.com") && !masked.includes("grace@example.com"), "recipient addresses are masked");
  await page.getByLabel("Address starts with").fill("gra");
  await page.getByRole("button", { name: "Search" }).click();
  check((await page.locator("main tbody").last().locator("tr").count()) === 1, "the recipient search finds one");
  await page.screenshot({ path: `${SHOTS}/email-request.png`, fullPage: true });
  await page.getByRole("button", { name: "Cancel request" }).click();
  check((await page.locator(".notice").innerText()).includes("2 pending recipients will not be sent"), "cancelling turns the pending recipients cancelled");

  // A POST without the CSRF token is refused, even from a signed-in admin.
  const noCsrf = await page.evaluate(async () => {
    const r = await fetch("/dashboard/queues/pause", { method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body: "queue=default" });
    return r.status;
  });
  check(noCsrf === 403, "a POST without the CSRF token is refused (403)");

  await visit(page, "/dashboard/audit?actor=dashboard%3A", "Audit", ["dead_letters.retry", "queue.pause", "queue.resume", "email_request.cancel", "dashboard:admin:Ops"], "audit");

  // A phone: nothing wider than the screen (tables scroll inside their box).
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  const small = await signIn(phone, "Ops on a phone", env("ADMIN_TOKEN"));
  const overflow = await small.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, `the overview fits a 390 px phone (overflow ${overflow} px)`);
  await small.screenshot({ path: `${SHOTS}/phone.png`, fullPage: false });

  // A viewer may look but not act.
  const viewerContext = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const viewer = await signIn(viewerContext, "Auditor", env("VIEWER_TOKEN"));
  await viewer.goto(`${BASE}/dashboard/queues`);
  const vrow = viewer.locator("tr", { has: viewer.locator("td", { hasText: /^default$/ }) });
  const [answer] = await Promise.all([
    viewer.waitForResponse((r) => r.url().endsWith("/dashboard/queues/pause")),
    vrow.getByRole("button", { name: "Pause" }).click(),
  ]);
  check(answer.status() === 403, "a viewer's action is refused (403)");
  check((await viewer.locator("main").innerText()).includes("may only look"), "the refusal says a viewer may only look");
  console.log("all dashboard checks passed");
} finally {
  await browser.close();
}
