import jobd


async def summarise(url: str) -> str:
    job = jobd.current_job()
    for step in ("fetching", "reading", "summarising"):
        await job.emit("step", {"text": f"{step} {url}"})  # streamed live to the producer
    return f"a summary of {url}"
