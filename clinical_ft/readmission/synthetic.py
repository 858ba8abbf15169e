"""SYNTHETIC MIMIC-shaped tables for the demo, tests and benchmarks. No real patient, no real outcome.

Writes ``ADMISSIONS_SYNTHETIC.csv``, ``NOTEEVENTS_SYNTHETIC.csv``, ``PATIENTS_SYNTHETIC.csv`` (every
row has ``SYNTHETIC=yes``) and ``README_SYNTHETIC.md``. Patient timelines are random (elective and emergency admissions,
newborns, in-hospital deaths); labels come from the same ClinicalBERT rule `prepare` applies
(mimic.label_admissions). Note text is a long discharge summary stitched from real MTSamples
transcriptions (which carry no outcome) with short invented risk or reassurance sentences spread
through it, some only after the first 512 tokens, so the label depends on the whole note. Without
the shared data folder the body is stitched from built-in neutral sentences (:data:`FILLER`: vitals,
labs, exam findings; no cue, dense enough that LATE_WORDS words exceed 512 WordPiece tokens).
Patient attributes (PATIENTS GENDER and DOB, ADMISSIONS INSURANCE and ETHNICITY) come from a random
stream of their own (:func:`_attributes`), independent of the outcome, so a seed gives the same
timelines, labels and notes as before they were added; ages at the first admission follow
:data:`AGE_BANDS` (DOB ~300 years before admission past 89, as MIMIC shifts it).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from .. import resources
from .mimic import label_admissions

RISK = [
    "Patient left against medical advice before completing the course of treatment.",
    "This is the third admission for decompensated heart failure in six months.",
    "Noncompliant with diuretics at home and has missed several dialysis sessions.",
    "Lives alone without caregiver support and reports being unable to afford medications.",
    "Discharged with persistent volume overload and a rising creatinine.",
    "Social work notes active substance use with a recent relapse.",
    "Still dyspneic on minimal exertion at discharge with increased home oxygen needs.",
    "Wound remains open with purulent drainage; outpatient intravenous antibiotics arranged.",
]
CALM = [
    "Symptoms fully resolved and the patient is ambulating independently at baseline.",
    "Lives with spouse who will help with medications; home services are arranged.",
    "Primary care follow-up confirmed within one week; patient verbalized understanding.",
    "Laboratory values normalized before discharge and tolerating a regular diet.",
    "Pharmacy review reports excellent adherence to all medications.",
    "Discharged home in good condition with no new medications.",
]
FILLER = [  # neutral, outcome-free; >= 1.6 MiniLM WordPiece tokens per word (numbers, units)
    'Vital signs: temperature 36.8 C, heart rate 78/min, blood pressure 124/76 mmHg, SpO2 97% on room air.',
    'Labs: sodium 139, potassium 4.1, chloride 102, bicarbonate 25, BUN 18, creatinine 0.9, glucose 104.',
    'CBC: WBC 7.2, hemoglobin 12.9 g/dL, hematocrit 38.4%, platelets 241 K/uL.',
    'Chest x-ray (PA/lateral): no focal consolidation, effusion or pneumothorax; cardiomediastinal silhouette normal.',
    'ECG: sinus rhythm at 76 bpm, PR 162 ms, QRS 94 ms, QTc 431 ms, no acute ST-T changes.',
    'Medications on admission: aspirin 81 mg PO daily, atorvastatin 40 mg PO qHS, metoprolol 25 mg PO BID.',
    'Allergies: NKDA. Diet: regular, 2 g sodium. Activity: as tolerated.',
    'Urinalysis: specific gravity 1.015, pH 6.0, protein negative, nitrite negative, leukocyte esterase negative.',
    'Abdomen soft, non-tender, non-distended; bowel sounds present in all 4 quadrants.',
    'Heart: regular rate and rhythm, S1/S2 normal, no murmurs, rubs or gallops.',
    'Lungs: clear to auscultation bilaterally (R = L), no wheezes, rales or rhonchi.',
    'Neuro: alert and oriented x3, CN II-XII grossly intact, strength 5/5 in all extremities.',
    'INR 1.1, PTT 29.8 s, magnesium 2.0 mg/dL, phosphate 3.4 mg/dL, calcium 9.2 mg/dL.',
    'Echo (TTE): LVEF 55-60%, normal wall motion, trace MR/TR, RVSP 28 mmHg.',
    'HbA1c 5.9%, TSH 1.8 mIU/L, LDL 96 mg/dL, HDL 48 mg/dL, triglycerides 131 mg/dL.',
    'CT head w/o contrast: no acute intracranial hemorrhage, mass effect or midline shift.',
    'IV access: 20G peripheral line, L forearm, placed 08:40; flushed q8h with 10 mL NS.',
    'Skin: warm, dry, intact; no rashes, ulcers or lesions noted on exam.',
]
GENDERS = {"M": 0.56, "F": 0.44}  # rough MIMIC-III shares; the outcome does not depend on any of them
ETHNICITIES = {"WHITE": 0.70, "BLACK/AFRICAN AMERICAN": 0.09, "HISPANIC OR LATINO": 0.04, "ASIAN": 0.03,
               "OTHER": 0.03, "UNKNOWN/NOT SPECIFIED": 0.09, "UNABLE TO OBTAIN": 0.02}
AGE_BANDS = {(18, 40): 0.15, (40, 65): 0.35, (65, 80): 0.28, (80, 89): 0.14, (300, 301): 0.08}  # years, adults
INSURANCE = {"under 65": {"Private": 0.58, "Medicaid": 0.20, "Medicare": 0.12, "Government": 0.06, "Self Pay": 0.04},
             "65+": {"Medicare": 0.86, "Private": 0.10, "Medicaid": 0.02, "Government": 0.01, "Self Pay": 0.01},
             "newborn": {"Private": 0.68, "Medicaid": 0.30, "Government": 0.02}}
LATE_WORDS = 350  # ~650 WordPiece tokens of MTSamples text (~1.85 per word): beyond a first 512-token window
SECTIONS = ["HISTORY OF PRESENT ILLNESS", "HOSPITAL COURSE", "PROCEDURES AND FINDINGS", "ASSESSMENT AND PLAN"]
README = """# SYNTHETIC data: not real patients, not real outcomes

Generated by `clinical_ft.readmission.synthetic` (seed {seed}) in the shape of MIMIC-III
ADMISSIONS/NOTEEVENTS/PATIENTS. Timelines, dates, ids, patient attributes (gender, DOB, insurance,
ethnicity) and readmission labels are random; note bodies are {source} with invented cue sentences. Use only to exercise the code. Labels follow
ClinicalBERT's 30-day rule applied to the synthetic timelines.
"""


def filler_texts() -> list[str]:
    """Bodies of built-in neutral sentences (every rotation of FILLER), one sentence per line, no cue."""
    return ["\n".join(FILLER[i:] + FILLER[:i]) for i in range(len(FILLER))]


def mtsamples_texts() -> list[str]:
    """MTSamples transcriptions (> 400 characters) with their comma-joined lines restored; the
    built-in :func:`filler_texts` when the shared data folder is absent."""
    import pandas as pd

    path = resources.data_root() / "mtsamples_subset" / "mtsamples_subset.csv"
    if not path.is_file():  # the shared data folder is absent
        return filler_texts()
    df = pd.read_csv(path, dtype=object, keep_default_na=False)
    texts = [t.replace(":  ,", ":\n").replace(": ,", ":\n").replace(".,", ".\n") for t in df["transcription"]]
    return sorted({t for t in texts if len(t) > 400})


def _timeline(rng: np.random.Generator, subject: int, start: datetime) -> list[dict[str, Any]]:
    """Admissions of one patient: (type, admit, discharge, death) in time order."""
    def adm(kind: str, at: datetime, stay: float, dies: bool = False) -> dict[str, Any]:
        disch = at + timedelta(days=stay)
        return {"SUBJECT_ID": subject, "ADMISSION_TYPE": kind, "ADMITTIME": at, "DISCHTIME": disch,
                "DEATHTIME": disch if dies else None, "HOSPITAL_EXPIRE_FLAG": int(dies)}

    u = rng.random()
    if u < 0.04:
        return [adm("NEWBORN", start, rng.uniform(2, 5))]
    first = adm(str(rng.choice(["EMERGENCY", "URGENT"])), start, rng.uniform(3, 10), dies=rng.random() < 0.04)
    out = [first]
    if first["DEATHTIME"] is not None:
        return out
    end = first["DISCHTIME"]
    pattern = rng.random()
    if pattern < 0.36:  # readmitted: emergency within 30 days
        out.append(adm("EMERGENCY", end + timedelta(days=rng.uniform(2, 27)), rng.uniform(3, 8)))
    elif pattern < 0.46:  # elective in between, then emergency still within 30 days of the first discharge
        el = adm("ELECTIVE", end + timedelta(days=rng.uniform(1, 6)), 1.0)
        out += [el, adm("EMERGENCY", el["DISCHTIME"] + timedelta(days=rng.uniform(2, 15)), rng.uniform(3, 8))]
    elif pattern < 0.58:  # elective within 30 days only: not a readmission
        out.append(adm("ELECTIVE", end + timedelta(days=rng.uniform(3, 25)), rng.uniform(1, 3)))
    elif pattern < 0.70:  # much later emergency: not within 30 days
        out.append(adm("EMERGENCY", end + timedelta(days=rng.uniform(45, 400)), rng.uniform(3, 8)))
    return out


def _draw(rng: np.random.Generator, shares: dict[Any, float]) -> Any:
    keys = list(shares)
    return keys[int(rng.choice(len(keys), p=np.asarray(list(shares.values())) / sum(shares.values())))]


def _attributes(seed: int, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[int, tuple[str, str]]]:
    """PATIENTS rows (SUBJECT_ID, GENDER, DOB) and subject -> (INSURANCE, ETHNICITY), from a random
    stream of their own (the generator's main stream is not touched), by each patient's first admission."""
    rng = np.random.default_rng([seed, 1])
    first: dict[int, dict[str, Any]] = {}
    for r in rows:
        first.setdefault(r["SUBJECT_ID"], r)
    patients, admin = [], {}
    for subject, a in first.items():
        gender, ethnicity = _draw(rng, GENDERS), _draw(rng, ETHNICITIES)
        if a["ADMISSION_TYPE"] == "NEWBORN":
            dob, payer = a["ADMITTIME"], _draw(rng, INSURANCE["newborn"])
        else:
            lo, hi = _draw(rng, AGE_BANDS)
            age = float(rng.uniform(lo, hi))
            dob = a["ADMITTIME"] - timedelta(days=age * 365.25)
            payer = _draw(rng, INSURANCE["65+" if age >= 65 else "under 65"])
        patients.append({"SUBJECT_ID": subject, "GENDER": gender, "DOB": f"{dob:%Y-%m-%d} 00:00:00"})
        admin[subject] = (payer, ethnicity)
    return patients, admin


def _note(rng: np.random.Generator, texts: list[str], label: int, words: int, late_fraction: float,
          admit: datetime, disch: datetime) -> str:
    """A discharge summary of about `words` words whose cue sentences agree with `label`."""
    body: list[str] = []
    while sum(len(s.split()) for s in body) < words:
        body += [s.strip() for s in texts[int(rng.integers(len(texts)))].split("\n") if s.strip()]
    body, total = body[:], 0
    for i, s in enumerate(body):
        total += len(s.split())
        if total >= words:
            body = body[: i + 1]
            break
    n_risk = int(rng.integers(3, 5)) if label else int(rng.integers(0, 2))
    n_calm = int(rng.integers(0, 2)) if label else int(rng.integers(3, 5))
    cues = [str(c) for c in rng.choice(RISK, n_risk, replace=False)] + [str(c) for c in rng.choice(CALM, n_calm, replace=False)]
    lo = 0
    if rng.random() < late_fraction:  # every cue after the first LATE_WORDS words (> 512 tokens)
        cum = np.cumsum([len(s.split()) for s in body])
        lo = min(int(np.searchsorted(cum, LATE_WORDS)) + 1, len(body))
    for c in cues:
        body.insert(int(rng.integers(lo, len(body) + 1)), c)
    per = max(1, len(body) // len(SECTIONS))
    parts = [f"SYNTHETIC NOTE (not a real patient). Admission Date: [**{admit:%Y-%m-%d}**] "
             f"Discharge Date: [**{disch:%Y-%m-%d}**] Service: MEDICINE. Attending: [**Last Name 1234**]"]
    for k, name in enumerate(SECTIONS):
        chunk = body[k * per:] if k == len(SECTIONS) - 1 else body[k * per:(k + 1) * per]
        parts.append(f"{name}:\n" + "\n".join(f"{j + 1}. {s}" if name == "ASSESSMENT AND PLAN" else s
                                              for j, s in enumerate(chunk)))
    return "\n\n".join(parts)


def generate(out_dir: str | Path, n_patients: int = 200, *, seed: int = 0, words: int = 400,
             late_fraction: float = 0.5, label_noise: float = 0.05) -> dict[str, Any]:
    """Write the synthetic ADMISSIONS/NOTEEVENTS/PATIENTS tables into `out_dir`; return counts and paths."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    texts = mtsamples_texts()
    source = ("built-in neutral sentences (vitals, labs, exam findings)" if texts == filler_texts()
              else "MTSamples sample transcriptions (public, no outcome labels)")
    rows: list[dict[str, Any]] = []
    for s in range(n_patients):
        start = datetime(2100, 1, 1) + timedelta(days=float(rng.uniform(0, 3650)), hours=float(rng.uniform(0, 24)))
        rows += _timeline(rng, 10_000 + s, start)
    adm = pd.DataFrame(rows)
    adm.insert(0, "ROW_ID", np.arange(1, len(adm) + 1))
    adm.insert(2, "HADM_ID", 100_000 + np.arange(len(adm)))
    labels = label_admissions(adm).set_index("HADM_ID")["LABEL"]
    notes = []
    for a in adm.itertuples():
        y = int(labels.get(a.HADM_ID, 0))
        y = 1 - y if rng.random() < label_noise else y  # content is an imperfect signal, as in real notes
        if a.ADMISSION_TYPE != "NEWBORN" and rng.random() < 0.95:  # a few admissions lack a discharge summary
            notes.append((a, "Discharge summary", a.DISCHTIME, _note(rng, texts, y, words, late_fraction, a.ADMITTIME, a.DISCHTIME)))
        day1 = a.ADMITTIME + timedelta(days=1)
        cue = str(rng.choice(RISK if (y if rng.random() < 0.8 else 1 - y) else CALM))
        notes.append((a, "Nursing", day1, f"SYNTHETIC NURSING NOTE. Vitals reviewed. {cue} Plan discussed with team."))
    ne = pd.DataFrame([{"ROW_ID": i + 1, "SUBJECT_ID": a.SUBJECT_ID, "HADM_ID": a.HADM_ID,
                        "CHARTDATE": f"{when:%Y-%m-%d}", "CHARTTIME": f"{when:%Y-%m-%d %H:%M:%S}", "CATEGORY": cat,
                        "DESCRIPTION": "Report", "ISERROR": "", "TEXT": text, "SYNTHETIC": "yes"}
                       for i, (a, cat, when, text) in enumerate(notes)])
    for c in ("ADMITTIME", "DISCHTIME", "DEATHTIME"):
        adm[c] = pd.to_datetime(adm[c]).dt.strftime("%Y-%m-%d %H:%M:%S")
    patients, admin = _attributes(seed, rows)
    adm.insert(adm.columns.get_loc("ADMISSION_TYPE") + 1, "INSURANCE", [admin[s][0] for s in adm["SUBJECT_ID"]])
    adm.insert(adm.columns.get_loc("INSURANCE") + 1, "ETHNICITY", [admin[s][1] for s in adm["SUBJECT_ID"]])
    adm["SYNTHETIC"] = "yes"
    adm.to_csv(out / "ADMISSIONS_SYNTHETIC.csv", index=False)
    pat = pd.DataFrame(patients)
    pat.insert(0, "ROW_ID", np.arange(1, len(pat) + 1))
    pat["SYNTHETIC"] = "yes"
    pat.to_csv(out / "PATIENTS_SYNTHETIC.csv", index=False)
    ne.to_csv(out / "NOTEEVENTS_SYNTHETIC.csv", index=False)
    (out / "README_SYNTHETIC.md").write_text(README.format(seed=seed, source=source), encoding="utf-8")
    return {"out": str(out), "patients": n_patients, "admissions": len(adm), "notes": len(ne),
            "readmitted": int(labels.sum())}
