-- The study runner on a real Slurm: a single-node cluster on loopback (tests/slurm/cluster.sh:
-- Debian's slurm-wlm and munge, started by hand, stopped by PID), the test study
-- (tests/study/counter_study.lua) submitted with --slurm as a job array of 4 shards plus a dependent
-- merge job. Its merged CSV must equal, byte for byte, the local workers' and the shards run by
-- hand. Then one job's record is deleted: --status names its shard, --slurm resubmits that shard
-- only, and the merge is the same again. Pending when the Slurm binaries are not installed
-- (tools/bootstrap.sh --test installs them) or when not root (the cluster runs its daemons as root
-- and munge).
local ls = require "landscape"
local store = require "landscape.study.store"

local h = require "study_helpers"
local q, read_file, tmpdir = h.q, h.read_file, h.tmpdir
local OPTS = " --steps 4"

local function have(cmd) return os.execute("command -v " .. cmd .. " >/dev/null 2>&1") == true end

local missing
for _, cmd in ipairs({"sbatch", "squeue", "scontrol", "sinfo", "/usr/sbin/slurmctld",
                      "/usr/sbin/slurmd", "/usr/sbin/munged"}) do
    if not have(cmd) then missing = cmd end
end
local is_root = (io.popen("id -u"):read("l")) == "0"

local state, conf

-- `cmd` with the cluster's configuration.
local function sh(cmd) return h.sh("SLURM_CONF=" .. q(conf or "") .. " " .. cmd) end

local function landscape(args) return h.landscape(OPTS .. " " .. args, "SLURM_CONF=" .. q(conf)) end

-- Wait until Slurm lists none of the given job ids as pending or running.
local function wait_jobs(ids, seconds)
    local t0 = ls.clock()
    while ls.clock() - t0 < seconds do
        local r = sh("squeue -h -j " .. table.concat(ids, ","))
        if r.code == 0 and r.out:match("^%s*$") then return true end
        store.sleep(0.2)
    end
    return false
end

local function submissions(dir) return store.read_record(dir .. "/slurm/submissions.lua") end

describe("study runner on a single-node Slurm", function()
    setup(function()
        if missing or not is_root then return end
        state = tmpdir()
        conf = state .. "/slurm.conf"
        local r = sh("tests/slurm/cluster.sh start " .. q(state))
        assert(r.code == 0, "cannot start the Slurm cluster:\n" .. r.out .. r.err)
    end)

    teardown(function()
        if state then sh("tests/slurm/cluster.sh stop " .. q(state)) end
        h.cleanup()
    end)

    it("gives the same merged CSV as local workers and shards by hand; resubmits missing shards",
       function()
        if missing then
            return pending("Slurm is not installed (" .. missing .. " missing): tools/bootstrap.sh "
                           .. "--test installs slurm-wlm and munge")
        end
        if not is_root then return pending("the single-node Slurm cluster needs root") end
        -- the references: 2 local workers, and 4 shards run by hand
        local local_dir, hand_dir = tmpdir(), tmpdir()
        local r = landscape("--out " .. q(local_dir) .. " --jobs 2")
        assert.are.equal(0, r.code, r.err)
        local expected = read_file(local_dir .. "/counter.csv")
        for k = 0, 3 do
            assert.are.equal(0, landscape("--out " .. q(hand_dir) .. " --shard " .. k .. "/4").code)
        end
        assert.are.equal(0, landscape("--out " .. q(hand_dir) .. " --merge").code)
        assert.are.equal(expected, read_file(hand_dir .. "/counter.csv"))

        -- Slurm: an array of 4 shards and a merge job that waits for it (--sleep slows the jobs
        -- so that --status sees them queued; it is not a setting, so the results do not change)
        local dir = tmpdir()
        local s = landscape("--out " .. q(dir) .. " --slurm --shards 4 --sleep 0.1")
        assert.are.equal(0, s.code, s.err)
        assert.matches("submitted shards 0%-3 of 4 as Slurm array %d+, merge job %d+", s.out)
        local sub = submissions(dir)[1]
        assert.are.same({4, "0-3"}, {sub.shards, sub.indices})
        local st = landscape("--out " .. q(dir) .. " --status")
        assert.are.equal(0, st.code, st.err)
        assert.truthy(st.out:find("slurm merge " .. sub.merge .. ": PENDING (Dependency)", 1, true),
                      st.out)
        assert.truthy(st.out:find("slurm array " .. sub.array .. " (shards 0-3 of 4", 1, true))
        assert.is_true(wait_jobs({sub.array, sub.merge}, 120), "the Slurm jobs did not finish")
        assert.are.equal(expected, read_file(dir .. "/counter.csv"))
        st = landscape("--out " .. q(dir) .. " --status")
        assert.truthy(st.out:find("24 jobs: 24 done, 0 failed, 0 running, 0 missing", 1, true))
        assert.truthy(st.out:find("slurm merge " .. sub.merge .. ": COMPLETED", 1, true), st.out)
        -- each task ran its own shard of 4: the count is in the script, not SLURM_ARRAY_TASK_COUNT
        for k = 0, 3 do
            local log = read_file(string.format("%s/logs/slurm-%d_%d.out", dir, sub.array, k))
            assert.truthy(log and log:find(string.format("shard %d/4: 6 jobs", k), 1, true), log)
        end

        -- lose one job's record: only its shard is resubmitted, with the same N
        local key = store.entries(dir .. "/jobs")[7]
        os.remove(dir .. "/jobs/" .. key .. "/done.lua")
        os.remove(dir .. "/counter.csv")
        st = landscape("--out " .. q(dir) .. " --status")
        local shard = st.out:match("unfinished shards of 4: (%d)\n")
        assert.truthy(shard, st.out)
        local again = landscape("--out " .. q(dir) .. " --slurm")
        assert.are.equal(0, again.code, again.err)
        local subs = submissions(dir)
        assert.are.equal(2, #subs)
        assert.are.same({4, shard}, {subs[2].shards, subs[2].indices})
        -- while it is queued or running, a third --slurm submits nothing
        local third = landscape("--out " .. q(dir) .. " --slurm")
        assert.truthy(third.out:find("every unfinished shard is queued or running", 1, true)
                      or third.out:find("every job has finished", 1, true), third.out)
        assert.are.equal(2, #submissions(dir))
        assert.is_true(wait_jobs({subs[2].array, subs[2].merge}, 120),
                       "the resubmission did not finish")
        local log = read_file(string.format("%s/logs/slurm-%d_%s.out", dir, subs[2].array, shard))
        assert.truthy(log:find("shard " .. shard .. "/4: 6 jobs", 1, true), log)
        assert.truthy(log:find("1 run, 5 skipped", 1, true), log)
        assert.are.equal(expected, read_file(dir .. "/counter.csv"))
    end)
end)
