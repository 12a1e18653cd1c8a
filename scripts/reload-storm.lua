-- wrk script for scripts/reload-storm.sh: POSTs the bodies of BODIES (one JSON body a line) in
-- turn, counts answers that are not 200 per thread, and prints one machine-readable RESULT line.
local bodies = {}
local threads = {}
local counter = 0

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    local path = os.getenv("BODIES")
    for line in io.lines(path) do
        if #line > 0 then table.insert(bodies, line) end
    end
    counter = math.random(#bodies)
    non200 = 0
    n503 = 0
    n504 = 0
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
end

function request()
    counter = counter % #bodies + 1
    return wrk.format(nil, "/prerank", nil, bodies[counter])
end

function response(status, headers, body)
    if status ~= 200 then non200 = non200 + 1 end
    if status == 503 then n503 = n503 + 1 end
    if status == 504 then n504 = n504 + 1 end
end

function done(summary, latency, requests)
    local bad, shed, expired = 0, 0, 0
    for _, t in ipairs(threads) do
        bad = bad + t:get("non200")
        shed = shed + t:get("n503")
        expired = expired + t:get("n504")
    end
    local e = summary.errors
    io.write(string.format("RESULT requests=%d non200=%d (503=%d 504=%d) socket_errors=%d p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
        summary.requests, bad, shed, expired, e.connect + e.read + e.write + e.timeout,
        latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
