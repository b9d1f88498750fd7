// POST /api/generate {"prompt": "...", "images": 2}
// Runs on the app's server: with the server credential, acting for the user
// of the app's own session, it holds the credits, runs the (fake) image job,
// charges each image the moment it arrives (withCredits' per-output mode),
// and returns what was not used — all of it when no image came out, the rest
// when the job throws midway. The browser never holds or settles credits itself.
import { creditsFor, currentUserId, errorResponse, signInFirst } from "../../../lib/credits";

interface GenerateBody {
  prompt: string;
  images?: number;
}

/**
 * Stands in for the real provider (e.g. BFL): its images arrive one by one;
 * it may make fewer than asked, or fail before the last one.
 */
function fakeImageJob(prompt: string, images: number): { taskId: string; images: AsyncIterable<string> } {
  const taskId = crypto.randomUUID();
  const made = prompt.includes("partial") ? Math.max(0, images - 1) : images;
  async function* arrive() {
    for (let i = 0; i < made; i++) {
      if (prompt.includes("fail") && i === made - 1) throw new Error("the provider failed before the last image");
      yield `https://images.example/${taskId}/${i}.png`;
    }
  }
  return { taskId, images: arrive() };
}

export async function POST(request: Request): Promise<Response> {
  // Who pays comes from the app's verified session, never from the request's data.
  const userId = await currentUserId(request);
  if (!userId) return signInFirst();

  let body: GenerateBody;
  try {
    body = (await request.json()) as GenerateBody;
  } catch {
    return Response.json({ code: "validation_error", detail: "Send a JSON body." }, { status: 400 });
  }
  const images = body.images ?? 1;
  if (typeof body.prompt !== "string" || !Number.isInteger(images) || images < 1 || images > 4) {
    return Response.json({ code: "validation_error", detail: "prompt and images (1-4) please." }, { status: 400 });
  }

  // A double-clicked button or a retried request holds credits once, and
  // charges each image once (its capture's key is `<key>-out-<n>`).
  const idempotencyKey = request.headers.get("idempotency-key") ?? undefined;
  if (idempotencyKey !== undefined && !/^[\x21-\x7e]{1,120}$/.test(idempotencyKey)) {
    return Response.json({ code: "validation_error", detail: "Idempotency-Key: 1-120 printable characters." }, { status: 400 });
  }
  try {
    const result = await creditsFor(userId, request).withCredits(
      "design_generate_image",
      images,
      async (_hold, outputs) => {
        const job = fakeImageJob(body.prompt, images);
        const urls: string[] = [];
        for await (const url of job.images) {
          await outputs.report(); // this image is charged now; a throw later keeps it charged
          urls.push(url);
        }
        // Fewer images than held: the rest goes back when the job returns.
        return { value: urls, taskId: job.taskId };
      },
      { ...(idempotencyKey && { idempotencyKey }), description: body.prompt.slice(0, 500), perOutput: true },
    );
    return Response.json(
      {
        images: result.value,
        reservationId: result.reservation.reservationId,
        outcome: result.outcome,
        charged: result.reservation.capturedAmount,
      },
      { status: result.outcome === "confirmed" ? 200 : 502 },
    );
  } catch (error) {
    return errorResponse(error);
  }
}
