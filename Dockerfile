# The relay's image. (The development node needs GDAL and is meant for this repository's tests and demo.)
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY shared ./shared
COPY proxy ./proxy
COPY devnode ./devnode
RUN pip install --no-cache-dir .
EXPOSE 3000
ENTRYPOINT ["odx-relay"]
CMD ["--host", "0.0.0.0", "--port", "3000", "--data-dir", "/data"]
