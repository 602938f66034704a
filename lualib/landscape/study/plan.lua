--- landscape.study.plan: the order in which jobs run and the shard each belongs to.
--
--   plan.costs(jobs, cost)    each job's estimated cost: cost(cfg) (a positive number) or 1
--   plan.order(jobs, costs)   the jobs by decreasing cost (ties: grid order): local workers take jobs
--                             from this list one at a time, longest first, which keeps them busy
--                             until the end (list scheduling, longest processing time first)
--   plan.shards(jobs, costs, n) -> shard of each job (0 .. n-1): longest first, each to the shard
--                             with the least cost so far (ties: the lowest shard); the same jobs and
--                             costs give the same shards on every machine
--   plan.parse_shard("3/16") -> 3, 16   (K in 0 .. N-1, as Slurm's array index from --array=0-(N-1))
--   plan.ranges({0, 1, 2, 5, 7, 8}) -> "0-2,5,7-8"   (Slurm's --array syntax)
local M = {}

local function fail(fmt, ...) error(string.format(fmt, ...), 0) end

function M.costs(jobs, cost)
    local out = {}
    for i, j in ipairs(jobs) do
        local c = 1
        if cost then
            local cfg = {}
            for k, v in pairs(j.config) do cfg[k] = v end
            c = cost(cfg)
            if type(c) ~= "number" or not (c > 0) or c == math.huge then
                fail("study: cost(cfg) must return a positive finite number, got %s for job %d",
                     tostring(c), j.index)
            end
        end
        out[i] = c
    end
    return out
end

local function by_cost(jobs, costs)
    local idx = {}
    for i = 1, #jobs do idx[i] = i end
    table.sort(idx, function(a, b)
        if costs[a] ~= costs[b] then return costs[a] > costs[b] end
        return a < b
    end)
    return idx
end

function M.order(jobs, costs)
    local out = {}
    for i, k in ipairs(by_cost(jobs, costs)) do out[i] = jobs[k] end
    return out
end

function M.shards(jobs, costs, n)
    local load, shard = {}, {}
    for s = 0, n - 1 do load[s] = 0 end
    for _, k in ipairs(by_cost(jobs, costs)) do
        local best = 0
        for s = 1, n - 1 do if load[s] < load[best] then best = s end end
        shard[k] = best
        load[best] = load[best] + costs[k]
    end
    return shard
end

function M.parse_shard(text)
    local k, n = tostring(text):match("^(%d+)/(%d+)$")
    k, n = math.tointeger(tonumber(k)), math.tointeger(tonumber(n))
    if not k or not n or n < 1 or k >= n then
        fail("--shard must be K/N with 0 <= K < N (K counts from 0, as Slurm's array index), got %s",
             tostring(text))
    end
    return k, n
end

function M.ranges(list)
    local s = {}
    for i, x in ipairs(list) do s[i] = x end
    table.sort(s)
    local parts, i = {}, 1
    while i <= #s do
        local j = i
        while j < #s and s[j + 1] == s[j] + 1 do j = j + 1 end
        parts[#parts + 1] = j > i and (s[i] .. "-" .. s[j]) or tostring(s[i])
        i = j + 1
    end
    return table.concat(parts, ",")
end

return M
