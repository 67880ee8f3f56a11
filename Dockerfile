# One image for the studio and its workers (docker-compose.yml runs both).
# The pinned torch in requirements.txt is the PyPI build, which carries its own CUDA libraries.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends fonts-dejavu-core fonts-noto-cjk fonts-lohit-deva \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt && pip install --no-cache-dir --no-deps clip-anytorch==2.6.0
COPY . .
# Weights download into this volume once, and are shared by every container.
ENV HF_HOME=/models
CMD ["python", "app.py", "--host", "0.0.0.0"]
