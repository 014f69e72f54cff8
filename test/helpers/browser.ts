import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';

/** Debian's Chromium (`apt-get install chromium`; .ci/run installs it when missing). No browser is downloaded. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

const SCREENSHOTS = new URL('../../docs/screenshots/', import.meta.url).pathname;

export async function launchChromium(): Promise<Browser> {
  assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
}

/** A tab that records everything that should never happen on the dashboard. */
export interface WatchedPage {
  page: Page;
  context: BrowserContext;
  /** Console errors and uncaught page errors, as text. */
  errors: string[];
  /** JavaScript dialogs (alert/confirm/prompt) that fired: injected script would show up here. */
  dialogs: string[];
  /**
   * Fail on any error or dialog, except console errors matching `allowed` (the browser logs a refused request,
   * "Failed to load resource: ... status of 401", when a test makes one on purpose).
   */
  assertClean(allowed?: RegExp[]): void;
  close(): Promise<void>;
}

export async function watchedPage(
  browser: Browser,
  viewport: { width: number; height: number } = { width: 1280, height: 800 },
): Promise<WatchedPage> {
  const context = await browser.newContext({ viewport, reducedMotion: 'reduce' });
  const page = await context.newPage();
  const errors: string[] = [];
  const dialogs: string[] = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') errors.push(`console: ${msg.text()}`);
  });
  page.on('pageerror', (err) => errors.push(`page error: ${err.message}`));
  page.on('dialog', (dialog) => {
    dialogs.push(`${dialog.type()}: ${dialog.message()}`);
    void dialog.dismiss();
  });
  return {
    page,
    context,
    errors,
    dialogs,
    assertClean(allowed = []) {
      const unexpected = errors.filter((e) => !allowed.some((re) => re.test(e)));
      assert.deepEqual(unexpected, [], 'no console or page errors');
      assert.deepEqual(dialogs, [], 'no JavaScript dialog fired');
    },
    close: () => context.close(),
  };
}

/**
 * Save the visible 1280×800 page as docs/screenshots/<name>.png, only with `EO_SCREENSHOTS=1`: the README's
 * pictures are taken by this test, and ordinary runs (CI) leave the tree alone.
 */
export async function screenshot(page: Page, name: string): Promise<void> {
  if (process.env.EO_SCREENSHOTS !== '1') return;
  mkdirSync(SCREENSHOTS, { recursive: true });
  // The caret and a hover would differ from run to run; the picture should not.
  await page.mouse.move(0, 0);
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), animations: 'disabled', caret: 'hide' });
}
