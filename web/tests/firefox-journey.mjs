// The page's main journey in Firefox, driven over WebDriver BiDi by puppeteer-core (no
// browser download: Debian's firefox-esr). tests/web/test_firefox.py runs it against a
// live stack; the Chromium tests (Playwright) check the same views in depth.
//
//   node web/tests/firefox-journey.mjs URL TOKEN [SHOTS_DIR]
//
// Prints one JSON line: {"ok": true, "userAgent", "dagId", "steps": [...]}, or
// {"ok": false, "step", "error", "pageErrors"} and exits 1.

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import puppeteer from "puppeteer-core";

const [url, token, shots] = process.argv.slice(2);
const FIREFOX = process.env.HELIOS_TEST_FIREFOX || "/usr/bin/firefox-esr";
const WAIT_MS = 60_000; // generous: CI may be busy
const steps = [];
const pageErrors = [];
let step = "launch";
let browser;

async function shot(page, name) {
  if (!shots) return;
  mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: join(shots, `${String(steps.length).padStart(2, "0")}-${name}.png`) });
}

async function text(page, selector) {
  await page.waitForSelector(selector, { timeout: WAIT_MS });
  return page.$eval(selector, (e) => e.textContent ?? "");
}

async function until(page, fn, ...args) {
  await page.waitForFunction(fn, { timeout: WAIT_MS, polling: 100 }, ...args);
}

try {
  browser = await puppeteer.launch({
    browser: "firefox",
    executablePath: FIREFOX,
    headless: true,
    // A closed network: nothing of Mozilla's to dial.
    extraPrefsFirefox: {
      "app.update.enabled": false,
      "browser.safebrowsing.malware.enabled": false,
      "browser.safebrowsing.phishing.enabled": false,
      "network.captive-portal-service.enabled": false,
      "network.connectivity-service.enabled": false,
    },
  });
  const page = await browser.newPage();
  await page.setViewport({ width: 1366, height: 900 });
  page.on("pageerror", (err) => pageErrors.push(String(err)));
  const userAgent = await browser.userAgent();

  step = "submit view";
  await page.goto(url + "/", { waitUntil: "load" });
  await page.evaluate((t) => localStorage.setItem("helios.token", t), token);
  await page.goto(url + "/submit", { waitUntil: "load" });
  await until(page, () => document.querySelector("#dag-editor .cm-content")?.textContent?.includes('dagName: "cache-test"'));
  await until(page, () => document.querySelectorAll("#dag-preview .node").length === 2
    && document.querySelectorAll("#dag-preview .edge").length === 1);
  const cache = await page.$eval("#use-cache", (e) => e.checked);
  if (!cache) throw new Error("the cache box is not checked by default");
  steps.push("submit view: the seed in the editor, its preview graph, cache on");
  await shot(page, "submit");

  step = "submit";
  const buttons = await page.$$("button");
  let submit = null;
  for (const b of buttons) {
    if ((await b.evaluate((e) => e.textContent?.trim())) === "Submit") submit = b;
  }
  if (!submit) throw new Error("no Submit button");
  await submit.click();
  await until(page, () => /\/runs\/[0-9a-f]{32}$/.test(location.pathname));
  const dagId = page.url().split("/").pop();
  steps.push(`submitted: /runs/${dagId}`);

  step = "run view";
  await until(page, () => document.querySelector(".rv")?.getAttribute("data-status") === "SUCCEEDED");
  await until(page, () => document.querySelector(".rv")?.getAttribute("data-layout") === "elk");
  const nodes = await page.$$eval(".rv-node", (n) => n.length);
  if (nodes !== 2) throw new Error(`${nodes} nodes in the run graph, not 2`);
  steps.push("run view: followed live to SUCCEEDED, graph laid out by ELK in its worker");
  await shot(page, "run-succeeded");

  step = "task logs";
  await page.click('.rv-node[data-group="process-data"]');
  await until(page, () => document.querySelector(".rv-details .rv-log")?.textContent?.includes("test data"));
  steps.push("task details: the log of process-data shows 'test data'");
  await shot(page, "task-logs");

  step = "metrics";
  await page.goto(url + "/dags/cache-test", { waitUntil: "load" });
  await page.waitForSelector("#metrics-chart canvas", { timeout: WAIT_MS });
  await until(page, (id) => [...document.querySelectorAll("#metrics-table tbody a")]
    .some((a) => a.getAttribute("href") === `/runs/${id}`), dagId);
  steps.push(`metrics: cards ${JSON.stringify((await text(page, "#card-cached .big")).trim())} cached runs, the chart, the run in the table`);
  await shot(page, "metrics");

  step = "runs list";
  await page.goto(url + "/", { waitUntil: "load" });
  await until(page, (id) => [...document.querySelectorAll("a")]
    .some((a) => a.getAttribute("href") === `/runs/${id}`), dagId);
  steps.push("runs list: the run is listed");
  await shot(page, "runs");

  if (pageErrors.length) throw new Error(`page errors: ${pageErrors.join("; ")}`);
  console.log(JSON.stringify({ ok: true, userAgent, dagId, steps }));
  await browser.close();
} catch (err) {
  console.log(JSON.stringify({ ok: false, step, error: String(err?.stack ?? err), steps, pageErrors }));
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}
