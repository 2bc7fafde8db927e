# mypy: ignore-errors
# (a SerialEM script: `serialem` exists only inside SerialEM or `tomopilot sem-run`)
"""A parallel tilt series in SerialEM's Python style: three targets by image shift.

Runs inside SerialEM (Script > Run) or, unchanged, against tomopilot's twin::

    tomopilot sem-run parallel_tomo_serialem.py --config semrun_twin.yaml

What it does, as a facility script would:

1. brings the specimen to the eucentric height, takes a View map where the stage is and picks
   three targets on it (textured areas of average brightness, at least ``minSpacing`` µm
   apart), as Navigator points;
2. realigns to the first target (the tracking target) with Realign to Item;
3. autofocuses on it, then visits every target by image shift and keeps its start image;
4. runs a grouped dose-symmetric series (0, +3, +6, -3, -6, +9, -9 ...): at each tilt every
   target is reached by image shift from its last position, moved by the rigid-rotation
   prediction of a flat specimen; each Record is aligned to the target's previous image of the
   same branch, and target 1's correction is passed on to the others (common stage motion);
   defocus follows each target's height; target 1 is refocused at the start of each group;
5. writes one MRC + mdoc per target (PriorRecordDose from per-target dose accumulators) and
   saves the Navigator.
"""

import math

import numpy as np
import serialem as sem

# ----- settings ---------------------------------------------------------------------------
rootName = "L1"
nTargets = 3
minSpacing = 1.0  # um between targets
step = 3.0  # degrees
maxTilt = 9.0
groupSize = 2
targetDefocus = -3.0
alignLimit = 0.3  # um: search radius when aligning targets other than the tracking one
refLetters = "JKLMNOPQ"  # buffers that keep each target's last image per branch

# ----- 1. View map and targets --------------------------------------------------------------
sem.SuppressReports()
sem.ResetClock()
sem.ProgramTimeStamps()
sem.SetTargetDefocus(targetDefocus)
sem.Eucentricity(3)  # rough, then refined: targets far from the axis height drift at every tilt
sem.OpenNewFile(rootName + "_maps.mrc")
sem.V()
mapIndex = int(sem.NewMap(0, "View map for " + rootName))
sem.CloseFile()

view = np.asarray(sem.bufferImage("A"), dtype=float)
ny, nx = view.shape
pixelUm = sem.ImageProperties("A")[4] / 1000.0  # nm -> um
block = max(8, int(0.25 / pixelUm))  # ~0.25 um blocks
scores = []
for y0 in range(block, ny - 2 * block, block // 2):
    for x0 in range(block, nx - 2 * block, block // 2):
        patch = view[y0 : y0 + block, x0 : x0 + block]
        scores.append(
            (patch.std() / max(patch.mean(), 1e-6), patch.mean(), x0 + block / 2, y0 + block / 2)
        )
means = np.array([s[1] for s in scores])
low, high = np.percentile(means, [30, 70])
candidates = sorted((s for s in scores if low <= s[1] <= high), reverse=True)
picked = []
for _score, _mean, x, y in candidates:
    if all(math.hypot(x - px, y - py) * pixelUm >= minSpacing for px, py in picked):
        picked.append((x, y))
    if len(picked) == nTargets:
        break
if len(picked) < nTargets:
    sem.Exit()

groupID = int(sem.GetUniqueNavID())
targets = []
for x, y in picked:
    index = int(sem.AddImagePosAsNavPoint("A", x, y, -9999, groupID))
    sem.SetItemAcquire(index, 1)
    targets.append(index)
sem.ChangeItemNote(targets[0], rootName + " tracking target")
labels = []
for index in targets:
    sem.ReportOtherItem(index)
    labels.append(sem.GetVariable("navLabel"))
sem.SaveNavigator(rootName + ".nav")
sem.Echo("Picked", len(targets), "targets on map", mapIndex)

# ----- 2. realign to the tracking target ------------------------------------------------------
sem.RealignToOtherItem(targets[0], 1)
sem.GoToLowDoseArea("R")
x0, y0 = sem.ReportOtherItem(targets[0])[1:3]
shifts = []  # specimen shift of each target from the tracking target (um, x along the axis)
for index in targets:
    x, y = sem.ReportOtherItem(index)[1:3]
    shifts.append((x - x0, y - y0))

# ----- 3. focus, then each target's start image ----------------------------------------------
sem.G()
focus0 = sem.ReportDefocus()
baseIS = sem.ReportImageShift()[:2]
state = []
for i, (sx, sy) in enumerate(shifts):
    sem.SetImageShift(baseIS[0], baseIS[1])
    if sem.ImageShiftByMicrons(sx, sy) == 1:
        sem.Echo("Target", i + 1, "is beyond the image-shift limit; skipped")
        continue
    sem.L()
    if i > 0:
        sem.LimitNextAutoAlign(alignLimit)
    position = {"is": sem.ReportImageShift()[:2], "n0": sy, "focus": focus0, "tilt": 0.0}
    sem.Copy("A", refLetters[2 * i])
    sem.Copy("A", refLetters[2 * i + 1])
    state.append({"index": i, "branch": {1: dict(position), -1: dict(position)}})

# ----- 4. grouped dose-symmetric tilt series -------------------------------------------------
order = [0.0]
up, down = 0.0, 0.0
while up < maxTilt or down > -maxTilt:
    for _ in range(groupSize):
        if up < maxTilt:
            up += step
            order.append(up)
    for _ in range(groupSize):
        if down > -maxTilt:
            down -= step
            order.append(down)

for number, tilt in enumerate(order):
    branch = 1 if tilt >= 0 else -1
    if branch < 0:  # approach negative tilts from below, as PACEtomo does (backlash)
        sem.TiltTo(tilt - step)
    sem.TiltTo(tilt)
    newGroup = number > 0 and (abs(tilt) / step) % groupSize == 1
    for target in state:
        i = target["index"]
        pos = target["branch"][branch]
        t, tPrev = math.radians(tilt), math.radians(pos["tilt"])
        dy = pos["n0"] * (math.cos(t) - math.cos(tPrev))
        dz = pos["n0"] * (math.sin(t) - math.sin(tPrev))
        pos["focus"] -= dz
        sem.SetImageShift(pos["is"][0], pos["is"][1])
        sem.ImageShiftByMicrons(0, dy)
        if i == 0 and newGroup:  # refocus the tracking target at each new group
            sem.G(-1)
            measured = sem.ReportAutoFocus()[0]
            for other in state:
                other["branch"][branch]["focus"] -= measured - targetDefocus
        sem.SetDefocus(pos["focus"])
        sem.AreaForCumulRecordDose(i)
        sem.R()
        seriesFile = f"{rootName}_ts_{i + 1:03d}.mrc"
        if tilt == 0:
            sem.OpenNewFile(seriesFile)
        else:
            sem.OpenOldFile(seriesFile)
        sem.S()
        reference = refLetters[2 * i + (0 if branch > 0 else 1)]
        if i > 0:
            sem.LimitNextAutoAlign(alignLimit)
        sem.AlignTo(reference)
        correction = sem.ReportISforBufferShift()
        sem.AddToAutodoc("SpecimenShift", "{:.4f} {:.4f}".format(*sem.ReportSpecimenShift()))
        sem.AddToAutodoc("NavigatorLabel", labels[i])
        sem.WriteAutodoc()
        sem.CloseFile()
        sem.Copy("A", reference)
        pos["is"] = sem.ReportImageShift()[:2]
        pos["tilt"] = tilt
        dose = sem.ImageConditions("A")[0]
        sem.AccumulateRecordDose(dose)
        if i == 0:  # common stage motion: the others follow the tracking target
            for other in state[1:]:
                for b in (1, -1) if tilt == 0 else (branch,):
                    o = other["branch"][b]
                    o["is"] = (o["is"][0] + correction[0], o["is"][1] + correction[1])
    sem.Echo(f"Tilt {tilt:.1f} done ({number + 1} of {len(order)})")

# ----- 5. finish ------------------------------------------------------------------------------
sem.TiltTo(0)
sem.SetImageShift(0, 0)
sem.SaveNavigator()
sem.Echo("Series done in %.1f min" % (sem.ReportClock() / 60))
