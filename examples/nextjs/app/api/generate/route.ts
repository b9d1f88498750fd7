// POST /api/generate {"prompt": "...", "images": 2}
// Runs on the app's server: with the server credential, acting for the user
// of the app's own session, it holds the credits, runs the (fake) image job,
// and confirms only the images that came out — or releases the hold when
// the job fails or throws. The browser never holds or settles credits itself.
import { creditsFor, currentUserId, errorResponse, signInFirst } from "../../../lib/credits";

interface GenerateBody {
  prompt: string;
  images?: number;
}

/** Stands in for the real provider call (e.g. BFL): may make fewer images than asked, or fail. */
async function fakeImageJob(prompt: string, images: number): Promise<{ urls: string[]; taskId: string }> {
  if (prompt.includes("fail")) throw new Error("the provider rejected the prompt");
  const taskId = crypto.randomUUID();
  const made = prompt.includes("partial") ? Math.max(0, images - 1) : images;
  const urls = Array.from({ length: made }, (_, i) => `https://images.example/${taskId}/${i}.png`);
  return { urls, taskId };
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

  // A double-clicked button or a retried request holds credits once.
  const idempotencyKey = request.headers.get("idempotency-key") ?? undefined;
  try {
    const result = await creditsFor(userId, request).withCredits(
      "design_generate_image",
      images,
      async () => {
        const { urls, taskId } = await fakeImageJob(body.prompt, images);
        return { value: urls, units: urls.length, taskId };
      },
      { ...(idempotencyKey && { idempotencyKey }), description: body.prompt.slice(0, 500) },
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
