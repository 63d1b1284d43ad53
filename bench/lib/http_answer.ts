// Raw HTTP/1.1 answers read off a keep-alive socket, for the load
// generators that write requests by hand (bench/lib/http_load.ts's evenly
// paced sender, bench/drivers/callers.ts).

/**
 * One whole answer at the head of `buf`: its status, body and length, or
 * null while incomplete. Throws on an answer without content-length.
 * `okBody` false leaves a 2xx answer's body undecoded ("").
 */
export function parseAnswer(
  buf: Buffer,
  okBody = true,
): { status: number; body: string; bytes: number } | null {
  const headEnd = buf.indexOf("\r\n\r\n");
  if (headEnd < 0) return null;
  const head = buf.toString("latin1", 0, headEnd);
  const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  if (length === null) throw new Error(`an answer without content-length: ${head.slice(0, 200)}`);
  const bytes = headEnd + 4 + Number(length[1]);
  if (buf.length < bytes) return null;
  const status = Number(head.slice(9, 12));
  const skip = !okBody && status >= 200 && status <= 299;
  return { status, body: skip ? "" : buf.toString("utf8", headEnd + 4, bytes), bytes };
}
