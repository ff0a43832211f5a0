// Drives headless Chromium (playwright-core) for browser_test.go: one JSON
// command per stdin line, one JSON answer per stdout line, each answer with
// the page's window.state. Commands:
//   {"cmd":"open","url":"..."}                 load the page
//   {"cmd":"wait","expr":"...","timeoutMs":n}  until the JS expression is true
//   {"cmd":"eval","expr":"..."}                run the expression (e.g. "client.close()")
// Browser console lines and page errors go to stderr.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const ctx = await chromium.launchPersistentContext(process.env.USER_DATA_DIR, {
  executablePath: process.env.CHROMIUM,
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
  ],
});
const page = ctx.pages()[0] ?? (await ctx.newPage());
page.on("console", (m) => process.stderr.write(`browser console: ${m.text()}\n`));
page.on("pageerror", (e) => process.stderr.write(`browser page error: ${e}\n`));

const state = () => page.evaluate(() => window.state ?? null).catch(() => null);
const answer = (o) => process.stdout.write(JSON.stringify(o) + "\n");

for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const c = JSON.parse(line);
  try {
    if (c.cmd === "open") await page.goto(c.url);
    else if (c.cmd === "wait") await page.waitForFunction(c.expr, null, { timeout: c.timeoutMs ?? 20000, polling: 50 });
    else if (c.cmd === "eval") await page.evaluate(c.expr);
    else throw new Error(`unknown command ${JSON.stringify(c.cmd)}`);
    answer({ ok: true, state: await state() });
  } catch (e) {
    answer({ ok: false, error: String(e), state: await state() });
  }
}
await ctx.close();
