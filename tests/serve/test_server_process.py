"""A real `mmdlr serve` (uvicorn subprocess on a free loopback port): token, Host check, 200 concurrent
requests whose answers equal `mmdlr predict`, and stable memory."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pandas as pd
import psutil

from .cases import AUTH, upload_parts

REQUESTS, CLIENTS, BATCH = 200, 8, 50
MODELS = ("deep_us", "radiomics_us")
# Measured growth after the first 50 requests is a few MB (allocator arenas of the worker threads settle
# during the first batch); a leak of the uploads or the feature arrays would add several MB per request.
MAX_RSS_GROWTH = 150 * 2**20


def test_token_is_required_except_for_health_and_the_host_must_be_a_loopback_name(server):
    url, _ = server
    assert httpx.get(f"{url}/health").status_code == 200
    assert httpx.get(f"{url}/health", headers={"Host": "rebound.attacker.example"}).status_code == 400
    assert httpx.get(f"{url}/info/").status_code == 401
    assert httpx.get(f"{url}/docs").status_code == 401 and httpx.get(f"{url}/openapi.json").status_code == 401
    assert httpx.post(f"{url}/infer/deep_us").status_code == 401
    assert httpx.get(f"{url}/info/", headers=AUTH).json()["models"]["deep_us"]["modalities"] == ["us"]


def test_concurrent_requests_match_predict_and_memory_stays_flat(server, new_manifest, predict_csv):
    url, pid = server
    patients = pd.read_csv(new_manifest, dtype=str, keep_default_na=False)
    patients = patients[patients["us_image"] != ""]
    parts = {row["patient_id"]: upload_parts(row, ["us"]) for _, row in patients.iterrows()}
    jobs = [(patients["patient_id"].iloc[i % len(patients)], MODELS[i % len(MODELS)]) for i in range(REQUESTS)]
    expected = predict_csv.set_index(["patient_id", "model"])["probability"]
    server_process = psutil.Process(pid)

    with httpx.Client(base_url=url, headers=AUTH, timeout=300) as http, ThreadPoolExecutor(CLIENTS) as pool:
        def call(job):
            patient_id, model = job
            response = http.post(f"/infer/{model}", files=parts[patient_id])
            return patient_id, model, response.status_code, response.json()

        answers, rss = [], []
        for start in range(0, REQUESTS, BATCH):
            answers += pool.map(call, jobs[start:start + BATCH])
            rss.append(server_process.memory_info().rss)

    assert [status for _, _, status, _ in answers] == [200] * REQUESTS
    for patient_id, model, _, body in answers:
        assert body["probability_malignant"] == expected[(patient_id, model)], (patient_id, model)
    growth = rss[-1] - rss[0]
    print(f"server RSS after each {BATCH} requests (MB): {[round(r / 2**20) for r in rss]}; "
          f"growth {growth / 2**20:.1f} MB")
    assert growth < MAX_RSS_GROWTH
